// The browser chapter's stream examples (book/src/browser.md includes them
// from here), run in Chromium against a real server by
// web/tests/client.mjs, so that what the book shows is what works.

// ANCHOR: ticker
export async function ticks(client) {
  const seen = [];
  for await (const tick of client.stream("clock", "ticker", [5, 100])) {
    seen.push(tick); // 0, 1, 2, 3, 4: one every 100 ms
  }
  return seen;
}
// ANCHOR_END: ticker

// ANCHOR: watch
export async function watchUntilDone(client, show) {
  for await (const value of client.stream("kv", "watch", ["colour"])) {
    show(value);                 // null while the key is absent, then each new value
    if (value === "done") break; // cancels the watch on the server
  }
}
// ANCHOR_END: watch

// ANCHOR: stop
export async function tickUntilStopped(client, stopButton, render) {
  const stop = new AbortController();
  stopButton.onclick = () => stop.abort();
  try {
    const ticks = client.stream("clock", "ticker", [10000, 1000], { signal: stop.signal });
    for await (const tick of ticks) {
      render(tick);
    }
  } catch (err) {
    if (err.code !== "cancelled") throw err; // stopped by the button: not an error
  }
}
// ANCHOR_END: stop

// ANCHOR: errors
export async function refused(client) {
  try {
    for await (const n of client.stream("clock", "ticker", [10001, 10])) console.log(n);
  } catch (err) {
    return `${err.name} ${err.code}`; // "SigilRpcError invalid_arguments"
  }
  return "not refused";
}
// ANCHOR_END: errors
