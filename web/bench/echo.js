// A bare WebSocket to an echo server, for the benchmark's reference rows:
// `call()` sends one 100-byte binary message (about the size of a signed
// calculator.add) and resolves when it comes back. Used by bench.js in the
// browser and by echo-client.mjs in node.

export async function openEcho(url) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`no echo server at ${url}`));
  });
  const message = new Uint8Array(100);
  const waiting = [];
  ws.onmessage = () => waiting.shift()();
  return {
    call: () =>
      new Promise((resolve) => {
        waiting.push(resolve);
        ws.send(message);
      }),
    close: () => ws.close(),
  };
}
