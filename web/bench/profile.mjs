// Where the browser client spends its time: Chromium's sampling profiler
// (DevTools protocol) over calls on one connection, self time by function.
//
//   node web/bench/profile.mjs [sequential|windowed] [seconds]
//
// Build web/pkg without `--remove-name-section` first to see Rust function
// names instead of wasm-function[N]. Environment: SIGIL_BIN as for run.mjs.

import path from "node:path";
import { ROOT, launchChromium, startSigil, startStaticServer } from "../tests/support.mjs";

const mode = process.argv[2] ?? "sequential";
const seconds = Number(process.argv[3] ?? "3");
const bin = process.env.SIGIL_BIN ?? path.join(ROOT, "target", "release", "sigil");
const server = await startSigil({ bin, config: 'allowed_origins = ["*"]\n' });
const files = await startStaticServer(server.key);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${files.address().port}/bench/index.html`);
  await page.waitForSelector("body[data-done=true]");
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 50 });
  await cdp.send("Profiler.start");
  const calls = await page.evaluate(
    async ({ url, serverKey, mode, seconds }) => {
      const { sigil, sequential, windowed, newIdentity } = window.bench;
      const client = await sigil.Client.connect(url, { serverKey, ...(await newIdentity()) });
      const r = mode === "windowed" ? await windowed(client, 64, seconds) : await sequential(client, seconds);
      client.close();
      return r.callsPerSecond;
    },
    { url: server.url, serverKey: server.key, mode, seconds },
  );
  const { profile } = await cdp.send("Profiler.stop");
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    const where = f.url ? ` ${path.basename(f.url)}${f.functionName ? "" : `:${f.lineNumber + 1}`}` : "";
    const name = `${f.functionName || "(anonymous)"}${where}`;
    self.set(name, (self.get(name) ?? 0) + (dt[i] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  console.log(`${mode}: ${calls.toFixed(0)} calls/s; self time by function (${(total / 1000).toFixed(0)} ms sampled):`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
} finally {
  await browser.close();
  await new Promise((r) => files.close(r));
  await server.stop({ kill: true });
}
