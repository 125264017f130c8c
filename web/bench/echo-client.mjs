// The browser benchmark's reference outside the browser: a node WebSocket
// client in a process of its own, against the same echo server, with the
// same loops as bench.js (100-byte binary messages: one at a time, then 64
// kept in flight). Prints its figures as JSON.
//
//   node --experimental-websocket web/bench/echo-client.mjs URL SECONDS
//
// Run by run.mjs: it shows what a round trip costs on this machine when
// no browser is between the page and the socket.

import { openEcho } from "./echo.js";

const [url, seconds = "3"] = process.argv.slice(2);
const echo = await openEcho(url);

async function rate(lanes, ms) {
  let done = 0;
  const start = performance.now();
  const end = start + ms;
  const lane = async () => {
    while (performance.now() < end) {
      await echo.call();
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return done / ((performance.now() - start) / 1000);
}

await rate(1, 500); // warm up
const result = { sequential: await rate(1, seconds * 1000), inFlight64: await rate(64, seconds * 1000) };
echo.close();
console.log(JSON.stringify(result));
