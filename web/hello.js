// The smallest complete sigil browser client: connect to the server this
// page came from, pin its key, call, show a remote error, close.
import init, { Client, generateKeyPair } from "./pkg/sigil_wasm.js";

const out = document.getElementById("out");
const say = (line) => {
  out.textContent += line + "\n";
};

document.getElementById("go").addEventListener("click", async () => {
  await init(); // loads sigil_wasm_bg.wasm (once)
  const serverKey = document.getElementById("server-key").value.trim();
  // A fresh key pair per visit: enough for a server that accepts any client.
  // A real application keeps its key and has the server authorise it.
  const me = generateKeyPair();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/sigil`;
  let client;
  try {
    client = await Client.connect(url, { serverKey, secretKey: me.secretKey, timeoutMs: 5000 });
  } catch (e) {
    // e.name is SigilRefused (e.code 1..5), SigilConnectionError or SigilUsageError.
    say(`not connected: ${e.name} ${e.code}: ${e.message}`);
    return;
  }
  say(`connected, session ${client.sessionHash.slice(0, 16)}…`);
  say(`1 + 2 = ${await client.call("calculator", "add", [1, 2])}`);
  try {
    await client.call("calculator", "div", [1, 0]);
  } catch (e) {
    say(`1 / 0: ${e.name} ${e.code}`); // SigilRpcError application_error
  }
  client.close();
  say("closed");
});
