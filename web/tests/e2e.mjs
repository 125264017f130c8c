// End-to-end test of the demo page: a real `sigil serve --demo`, Debian's
// Chromium (headless) driven by playwright-core.
//
//   node --test web/tests/e2e.mjs
//
// Environment (all optional):
//   SIGIL_BIN             the sigil binary to start (default: target/debug/sigil)
//   SIGIL_E2E_WS_URL,     use a server that is already running instead: its `url:`
//   SIGIL_E2E_SERVER_KEY    and `public key:` lines as `sigil serve` prints them
//   SIGIL_E2E_PAGE        where to load the page from (default: the server's own origin
//                         if it serves the page, else a static server over web/ started here)
//   SIGIL_E2E_REQUIRE_SERVED_PAGE=1  fail instead of falling back to that static server
//   SIGIL_E2E_ARTIFACTS   where screenshots go (default: web/build/e2e)
//   CHROMIUM              the browser (default: /usr/bin/chromium)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, access } from "node:fs/promises";
import path from "node:path";
import { WEB, launchChromium, startSigil, startStaticServer } from "./support.mjs";

const ARTIFACTS = process.env.SIGIL_E2E_ARTIFACTS ?? path.join(WEB, "build", "e2e");

let server = null; // the sigil server we started, if any
let staticServer = null; // the fallback static server, if any
let browser = null;
let page = null;
let wsUrl = "";
let serverKey = "";
let pageUrl = "";
const problems = []; // console errors and page errors (CSP violations show here)

async function servesPage(origin) {
  try {
    const resp = await fetch(`${origin}/`);
    return resp.ok && (await resp.text()).includes("sigil");
  } catch {
    return false;
  }
}

before(async () => {
  if (process.env.SIGIL_E2E_WS_URL && process.env.SIGIL_E2E_SERVER_KEY) {
    wsUrl = process.env.SIGIL_E2E_WS_URL;
    serverKey = process.env.SIGIL_E2E_SERVER_KEY;
  } else {
    server = await startSigil();
    wsUrl = server.url;
    serverKey = server.key;
  }
  const origin = wsUrl.replace(/^ws/, "http").replace(/\/sigil$/, "");
  if (process.env.SIGIL_E2E_PAGE) {
    pageUrl = process.env.SIGIL_E2E_PAGE;
  } else if (await servesPage(origin)) {
    pageUrl = `${origin}/`;
  } else if (process.env.SIGIL_E2E_REQUIRE_SERVED_PAGE === "1") {
    throw new Error(`${origin}/ does not serve the demo page`);
  } else {
    try {
      await access(path.join(WEB, "pkg", "sigil_wasm.js"));
    } catch {
      throw new Error("web/pkg is not built: see web/BUILD.md");
    }
    staticServer = await startStaticServer(serverKey);
    pageUrl = `http://127.0.0.1:${staticServer.address().port}/`;
    console.log(`${origin}/ does not serve the page (yet): loading it from ${pageUrl} (web/ with the server's headers)`);
  }
  console.log(`page ${pageUrl}, sigil server ${wsUrl}`);

  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  if (staticServer) await new Promise((r) => staticServer.close(r));
  await server?.stop();
});

const lastLog = () => page.locator("#log li").last();

async function logEntryAfter(count) {
  await page.waitForFunction((n) => document.querySelectorAll("#log li").length > n, count);
  return (await lastLog().textContent()).trim();
}

test("the page loads, makes a key pair and prefills the server key", async () => {
  await page.goto(pageUrl);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  const mine = await page.textContent("#my-fingerprint");
  assert.match(mine, /^SHA256:[A-Za-z0-9+/]{43}$/);
  // Prefilled from /server-key, with the plain note that it is no trust anchor.
  assert.equal(await page.inputValue("#server-key"), serverKey);
  assert.ok(await page.isVisible("#prefill-note"));
  assert.match(await page.textContent("#prefill-note"), /not a trust anchor/);
  assert.match(await page.textContent("#server-fingerprint"), /^SHA256:/);
  // The key pair survives a reload (localStorage).
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  assert.equal(await page.textContent("#my-fingerprint"), mine);
  await page.fill("#server-url", wsUrl);
});

test("a wrong pinned server key is refused, visibly", async () => {
  const wrong = randomBytes(32).toString("base64");
  await page.fill("#server-key", wrong);
  await page.click("#connect");
  await page.waitForSelector("#refusal:not([hidden])");
  const text = await page.textContent("#refusal");
  assert.match(text, /Refused by the server \(refusal code 1\)/);
  assert.match(text, /handshake failed/);
  assert.equal(await page.getAttribute("#connection-status", "data-state"), "error");
  await page.screenshot({ path: path.join(ARTIFACTS, "refusal.png"), fullPage: true });
});

test("connects with the right key and calls calculator, echo and kv", async () => {
  await page.fill("#server-key", serverKey);
  await page.click("#connect");
  await page.waitForSelector("#connection-status[data-state=connected]", { timeout: 15_000 });
  // The server says who it thinks this browser is: its own key's fingerprint.
  const mine = await page.textContent("#my-fingerprint");
  await page.waitForFunction(() => document.querySelector("#whoami").textContent.startsWith("SHA256:"));
  assert.ok((await page.textContent("#whoami")).startsWith(`${mine} from 127.0.0.1:`));
  assert.ok(await page.isHidden("#refusal"));
  const ms = await page.getAttribute("#connection-status", "data-handshake-ms");
  console.log(`handshake in headless Chromium (WebSocket open + sigil/1 handshake): ${ms} ms`);
  assert.match(await page.textContent("#session-hash"), /^[0-9a-f]{64}$/);

  let n = await page.locator("#log li").count();
  await page.fill("#calc-a", "6");
  await page.fill("#calc-b", "3");
  await page.selectOption("#calc-op", "div");
  await page.click("#calc-run");
  assert.match(await logEntryAfter(n), /calculator\.div\(6, 3\) → 2$/);

  n += 1;
  await page.fill("#calc-b", "0");
  await page.click("#calc-run");
  const divByZero = await logEntryAfter(n);
  assert.match(divByZero, /application_error: division by zero/);
  assert.equal(await lastLog().getAttribute("class"), "error");

  n += 1;
  await page.selectOption("#calc-op", "add");
  await page.fill("#calc-b", "1.5");
  await page.click("#calc-run");
  assert.match(await logEntryAfter(n), /calculator\.add\(6, 1\.5\) → 7\.5$/);

  // Keyboard: Enter in the text field submits the echo form.
  n += 1;
  await page.fill("#echo-text", "héllo, sigil ✓");
  await page.focus("#echo-text");
  await page.keyboard.press("Enter");
  assert.match(await logEntryAfter(n), /echo\.echo\("héllo, sigil ✓"\) → "héllo, sigil ✓"$/);

  n += 1;
  await page.fill("#kv-key", "colour");
  await page.fill("#kv-value", "blue");
  await page.click("#kv-set");
  assert.match(await logEntryAfter(n), /kv\.set\("colour", "blue"\) → null$/);
  n += 1;
  await page.click("#kv-get");
  assert.match(await logEntryAfter(n), /kv\.get\("colour"\) → "blue"$/);
  n += 1;
  await page.click("#kv-delete");
  assert.match(await logEntryAfter(n), /kv\.delete\("colour"\) → true$/);
  n += 1;
  await page.click("#kv-get");
  assert.match(await logEntryAfter(n), /kv\.get\("colour"\) → null$/);

  // Put the division by zero back on screen for the screenshot.
  n += 1;
  await page.selectOption("#calc-op", "div");
  await page.fill("#calc-b", "0");
  await page.click("#calc-run");
  await logEntryAfter(n);
  await page.screenshot({ path: path.join(ARTIFACTS, "demo.png"), fullPage: true });
  console.log(`screenshots: ${path.join(ARTIFACTS, "demo.png")}, refusal.png`);
});

test("the live panel shows ticks as they come, stops a ticker, and watches a key", async () => {
  assert.ok(await page.isVisible("#live"));
  // A short ticker runs to its end: every tick shows, the last one stays.
  await page.fill("#ticker-count", "5");
  await page.fill("#ticker-interval", "50");
  await page.click("#ticker-toggle");
  await page.waitForSelector("#ticker-status[data-state=done]", { timeout: 10_000 });
  assert.equal(await page.textContent("#ticker-value"), "4");
  assert.equal(await page.getAttribute("#ticker-value", "data-ticks"), "5");

  // A long one, stopped with its button (the stream's AbortSignal): no tick after that.
  await page.fill("#ticker-count", "10000");
  await page.fill("#ticker-interval", "20");
  await page.click("#ticker-toggle");
  await page.waitForFunction(() => Number(document.querySelector("#ticker-value").dataset.ticks) >= 3);
  assert.equal(await page.textContent("#ticker-toggle"), "Stop");
  await page.click("#ticker-toggle");
  await page.waitForSelector("#ticker-status[data-state=stopped]");
  assert.equal(await page.textContent("#ticker-toggle"), "Start");
  const stoppedAt = await page.textContent("#ticker-value");
  await page.waitForTimeout(200);
  assert.equal(await page.textContent("#ticker-value"), stoppedAt);

  // kv.watch: the value now (absent), then changes made by another connection and by this page.
  const key = `e2e-${randomBytes(4).toString("hex")}`;
  await page.fill("#watch-key", key);
  await page.click("#watch-toggle");
  await page.waitForFunction(() => document.querySelector("#watch-value").textContent === "(absent)");
  await page.evaluate(async (key) => {
    const mod = await import("./pkg/sigil_wasm.js");
    const serverKey = document.querySelector("#server-key").value;
    const url = document.querySelector("#server-url").value;
    const other = await mod.Client.connect(url, { serverKey, secretKey: mod.generateKeyPair().secretKey });
    await other.call("kv", "set", [key, "green"]);
    other.close();
  }, key);
  await page.waitForFunction(() => document.querySelector("#watch-value").textContent === '"green"');
  await page.fill("#kv-key", key);
  await page.fill("#kv-value", "red");
  await page.click("#kv-set");
  await page.waitForFunction(() => document.querySelector("#watch-value").textContent === '"red"');
  assert.deepEqual(await page.locator("#watch-history li").allTextContents(), ['"green"', "(absent)"]);
  await page.screenshot({ path: path.join(ARTIFACTS, "live.png"), fullPage: true });
  await page.click("#watch-toggle");
  await page.waitForSelector("#watch-status[data-state=stopped]");
  assert.equal(await page.textContent("#watch-toggle"), "Watch");
});

test("many calls in flight on one socket, then disconnect", async () => {
  const results = await page.evaluate(async () => {
    const mod = await import("./pkg/sigil_wasm.js");
    const pair = mod.generateKeyPair();
    const serverKey = document.querySelector("#server-key").value;
    const url = document.querySelector("#server-url").value;
    const c = await mod.Client.connect(url, { serverKey, secretKey: pair.secretKey });
    const out = await Promise.all(Array.from({ length: 64 }, (_, i) => c.call("echo", "echo", [i])));
    c.close();
    const after = await c.call("echo", "echo", [1]).catch((e) => `${e.name}:${e.code}`);
    return { out, after };
  });
  assert.deepEqual(results.out, Array.from({ length: 64 }, (_, i) => i));
  assert.equal(results.after, "SigilConnectionError:connection_closed");

  await page.click("#disconnect");
  await page.waitForSelector("#connection-status[data-state=idle]");
  assert.ok(await page.isDisabled("#calc-run"));
  assert.ok(await page.isHidden("#live"));
});

test("the minimal page of the book (hello.html) connects, calls and shows the error", async () => {
  const origin = new URL(pageUrl).origin;
  await page.goto(`${origin}/hello.html`);
  await page.fill("#server-key", serverKey);
  await page.click("#go");
  await page.waitForFunction(() => document.getElementById("out").textContent.includes("closed"), null, {
    timeout: 15_000,
  });
  const out = await page.textContent("#out");
  assert.match(out, /^connected, session [0-9a-f]{16}…$/m);
  assert.match(out, /^1 \+ 2 = 3$/m);
  assert.match(out, /^1 \/ 0: SigilRpcError application_error$/m);
  // With a wrong key it says it was refused.
  await page.reload();
  await page.fill("#server-key", randomBytes(32).toString("base64"));
  await page.click("#go");
  await page.waitForFunction(() => document.getElementById("out").textContent.includes("not connected"));
  assert.match(await page.textContent("#out"), /not connected: SigilRefused 1: /);
});

test("no console errors or CSP violations", () => {
  // The refusal is logged by the page itself, not as a console error.
  assert.deepEqual(problems, []);
});
