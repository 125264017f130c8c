// The browser benchmark: headless Chromium against `sigil serve --demo`.
//
//   node web/bench/run.mjs            (cargo xtask bench runs it)
//
// Loads web/bench/index.html from a static server over web/ (with the sigil
// server's headers: no-store, so every load compiles the module again) and
// measures, on one page and one server:
//   init       import of pkg/sigil_wasm.js and `await init()` (streaming
//              compile), median of fresh page loads
//   identity   a new identity (Identity.generate(): WebCrypto X25519), median
//   connect    Client.connect (WebSocket open + handshake) then close, median
//   calls      calculator.add: one at a time, and 64 kept in flight
//   echo       the same loops on a bare WebSocket to a node echo server: the
//              browser's and the machine's own limit, for scale
//   nodeEcho   the same loops from a node WebSocket client in a process of
//              its own (echo-client.mjs) to that echo server: the round trip
//              without a browser in between
//
// Environment:
//   SIGIL_BIN           the server (default target/release/sigil)
//   SIGIL_BENCH_SECONDS how long each calls row runs (default 3)
//   SIGIL_BENCH_JSON    also write the figures to this file

import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import path from "node:path";
import { ROOT, launchChromium, startEchoServer, startSigil, startStaticServer } from "../tests/support.mjs";

const INIT_LOADS = 9;
const seconds = Number(process.env.SIGIL_BENCH_SECONDS ?? "3");

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function result(page, url) {
  await page.goto(url);
  await page.waitForSelector("body[data-done=true]", { timeout: 120_000 });
  const r = await page.evaluate(() => window.benchResult);
  if (r.error) throw new Error(`the benchmark page failed: ${r.error}`);
  return r;
}

const bin = process.env.SIGIL_BIN ?? path.join(ROOT, "target", "release", "sigil");
// The page comes from another origin (the static server): allow it.
const server = await startSigil({ bin, config: 'allowed_origins = ["*"]\n' });
const files = await startStaticServer(server.key);
const echo = await startEchoServer();
const browser = await launchChromium();
try {
  const base = `http://127.0.0.1:${files.address().port}/bench/index.html`;
  const page = await browser.newPage();
  const init = [];
  for (let i = 0; i < INIT_LOADS; i++) init.push(await result(page, `${base}?phase=init`));
  const q = new URLSearchParams({
    phase: "run",
    url: server.url,
    serverKey: server.key,
    seconds,
    echo: `ws://127.0.0.1:${echo.address().port}/`,
  });
  const r = await result(page, `${base}?${q}`);
  const client = path.join(ROOT, "web", "bench", "echo-client.mjs");
  const echoUrl = `ws://127.0.0.1:${echo.address().port}/`;
  const node = await promisify(execFile)(process.execPath, ["--experimental-websocket", client, echoUrl, String(seconds)]);
  const figures = {
    chromium: browser.version(),
    nodeEcho: JSON.parse(node.stdout),
    server: bin,
    initMs: median(init.map((x) => x.initMs)),
    importMs: median(init.map((x) => x.importMs)),
    ...r,
  };
  const ms = (x) => `${x.toFixed(2)} ms`;
  console.log(`Browser client (headless Chromium ${figures.chromium}, sigil serve --demo on loopback)`);
  console.log(`  init (streaming compile): ${ms(figures.initMs)} median of ${INIT_LOADS} loads (JS glue import ${ms(figures.importMs)})`);
  console.log(`  identity creation:        ${ms(figures.identityMs)} median (${figures.api === "identity" ? "Identity.generate(), WebCrypto" : "generateKeyPair(), text key"})`);
  console.log(`  connect + handshake:      ${ms(figures.connectMs)} median${figures.connectTextKeyMs ? ` (text key: ${ms(figures.connectTextKeyMs)})` : ""}`);
  const s = figures.sequential;
  console.log(`  calls sequential:   ${s.callsPerSecond.toFixed(0).padStart(7)} calls/s  p50 ${s.p50Us.toFixed(0)} µs  p99 ${s.p99Us.toFixed(0)} µs`);
  console.log(`  calls 64 in flight: ${figures.inFlight64.callsPerSecond.toFixed(0).padStart(7)} calls/s`);
  const e = figures.echo;
  const pct = (a, b) => `${((100 * a) / b).toFixed(0)}%`;
  console.log(
    `  bare WebSocket echo (node, same browser): ${e.sequential.callsPerSecond.toFixed(0)} round trips/s sequential, ` +
      `${e.inFlight64.callsPerSecond.toFixed(0)} with 64 in flight; sigil reaches ` +
      `${pct(s.callsPerSecond, e.sequential.callsPerSecond)} and ${pct(figures.inFlight64.callsPerSecond, e.inFlight64.callsPerSecond)} of it`,
  );
  const n = figures.nodeEcho;
  console.log(
    `  the same echo from node (no browser, its own process): ${n.sequential.toFixed(0)} round trips/s sequential, ` +
      `${n.inFlight64.toFixed(0)} with 64 in flight`,
  );
  if (process.env.SIGIL_BENCH_JSON) {
    await writeFile(process.env.SIGIL_BENCH_JSON, JSON.stringify(figures, null, 2) + "\n");
  }
} finally {
  await browser.close();
  await new Promise((r) => files.close(r));
  await new Promise((r) => echo.close(r));
  await server.stop({ kill: true });
}
