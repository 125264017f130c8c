// The smallest complete sigil browser client: an identity whose private key
// no script can read, the server this page came from (its key pinned),
// a call, a remote error, close.
import init, { Client, Identity } from "./pkg/sigil_wasm.js";

const out = document.getElementById("out");
const say = (line) => {
  out.textContent += line + "\n";
};
const keyField = document.getElementById("server-key");

await init(); // loads sigil_wasm_bg.wasm

// A convenience, not a trust anchor: compare it with what `sigil serve` printed.
const info = await fetch("./server-key").then((r) => (r.ok ? r.json() : {}), () => ({}));
keyField.value ||= info.public_key ?? "";

document.getElementById("go").addEventListener("click", async () => {
  // Made once, kept in IndexedDB: the same client key on the next visit.
  let identity = await Identity.load("hello");
  if (!identity) {
    identity = await Identity.generate();
    await identity.save("hello");
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/sigil`;
  let client;
  try {
    client = await Client.connect(url, { serverKey: keyField.value.trim(), identity, timeoutMs: 5000 });
  } catch (e) {
    // e.name is SigilRefused (e.code 1..5), SigilConnectionError or SigilUsageError.
    say(`not connected: ${e.name} ${e.code}: ${e.message}`);
    return;
  }
  say(`connected as ${identity.fingerprint}`);
  say(`1 + 2 = ${await client.call("calculator", "add", [1, 2])}`);
  try {
    await client.call("calculator", "div", [1, 0]);
  } catch (e) {
    say(`1 / 0: ${e.name} ${e.code}`); // SigilRpcError application_error
  }
  client.close();
  say("closed");
});
