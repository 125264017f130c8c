// The browser benchmark's page: what it measures comes from the query string
// (`?phase=init`, `?phase=run&url=…&serverKey=…&seconds=…`, or
// nothing: only load, for profile.mjs), the result
// goes to `window.benchResult` (and `<pre id=out>`), and `body[data-done]`
// says it is there. `run.mjs` drives it; see that file.

import { openEcho } from "./echo.js";

const t0 = performance.now();
const sigil = await import("../pkg/sigil_wasm.js");
const imported = performance.now();
await sigil.default(); // streaming compile of sigil_wasm_bg.wasm
const ready = performance.now();

const params = new URLSearchParams(location.search);
const out = document.getElementById("out");

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * q))] : NaN;
}

// A new identity: non-extractable WebCrypto keys where the module has them,
// else a text key pair (older builds of the module).
async function newIdentity() {
  if (sigil.Identity) return { identity: await sigil.Identity.generate() };
  return { secretKey: sigil.generateKeyPair().secretKey };
}

async function timeEach(n, f) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    times.push(performance.now() - t);
  }
  return times;
}

async function sequential(client, seconds) {
  const latencies = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    await client.call("calculator", "add", [1, 2]);
    latencies.push(performance.now() - t);
  }
  const elapsed = (performance.now() - start) / 1000;
  return {
    callsPerSecond: latencies.length / elapsed,
    p50Us: median(latencies) * 1000,
    p99Us: quantile(latencies, 0.99) * 1000,
  };
}

// `window` calls in flight at all times: each one that completes starts the next.
async function windowed(client, window, seconds) {
  let done = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  const lane = async (i) => {
    while (performance.now() < end) {
      await client.call("calculator", "add", [i, 1]);
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: window }, (_, i) => lane(i)));
  return { callsPerSecond: done / ((performance.now() - start) / 1000) };
}

// The same two loops on a bare WebSocket to an echo server: what the
// browser and this machine allow before any sigil code runs.
async function echo(url, seconds) {
  const client = await openEcho(url);
  await sequential(client, 0.5);
  const result = { sequential: await sequential(client, seconds), inFlight64: await windowed(client, 64, seconds) };
  client.close();
  return result;
}

async function run() {
  const url = params.get("url");
  const serverKey = params.get("serverKey");
  const seconds = Number(params.get("seconds") ?? "3");
  const rounds = Number(params.get("rounds") ?? "20");
  const result = { api: sigil.Identity ? "identity" : "secretKey" };

  let who = null;
  result.identityMs = median(await timeEach(rounds, async () => (who = await newIdentity())));
  result.connectMs = median(
    await timeEach(rounds, async () => {
      const c = await sigil.Client.connect(url, { serverKey, ...who });
      c.close();
    }),
  );
  if (sigil.Identity) {
    const secretKey = sigil.generateKeyPair().secretKey;
    result.connectTextKeyMs = median(
      await timeEach(rounds, async () => {
        const c = await sigil.Client.connect(url, { serverKey, secretKey });
        c.close();
      }),
    );
  }
  const client = await sigil.Client.connect(url, { serverKey, ...who });
  await sequential(client, 0.5); // warm up
  result.sequential = await sequential(client, seconds);
  result.inFlight64 = await windowed(client, 64, seconds);
  client.close();
  if (params.get("echo")) result.echo = await echo(params.get("echo"), seconds);
  return result;
}

// For profile.mjs: the loops, to run under the profiler.
window.bench = { sigil, sequential, windowed, newIdentity };

let result;
try {
  const phase = params.get("phase");
  if (phase === "init") result = { importMs: imported - t0, initMs: ready - imported };
  else if (phase === "run") result = await run();
  else result = {};
} catch (err) {
  result = { error: `${err.name}: ${err.message}` };
}
window.benchResult = result;
out.textContent = JSON.stringify(result, null, 2);
document.body.dataset.done = "true";
