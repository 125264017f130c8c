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

/** The screen the main flow must fit on without scrolling, and a phone's. */
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** A new page in `context` whose console errors and page errors are collected. */
async function watched(context) {
  const p = await context.newPage();
  p.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  p.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return p;
}

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
  page = await watched(await browser.newContext({ viewport: DESKTOP }));
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  if (staticServer) await new Promise((r) => staticServer.close(r));
  await server?.stop();
});

const shot = (p, name, fullPage = false) => p.screenshot({ path: path.join(ARTIFACTS, name), fullPage });

/** The protocol log's lines. */
const traceLines = (p = page) => p.locator("#trace li").allTextContents();

/** What scripts of the page can read from storage: localStorage, sessionStorage, cookies, IndexedDB. */
async function scriptReadableStorage(p = page) {
  return p.evaluate(async () => {
    const all = (store) => Object.fromEntries(Object.keys(store).map((k) => [k, store.getItem(k)]));
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open("sigil");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const records = db.objectStoreNames.contains("identities")
      ? await new Promise((resolve) => {
          const req = db.transaction("identities").objectStore("identities").getAll();
          req.onsuccess = () => resolve(req.result);
        })
      : [];
    db.close();
    const exported = [];
    for (const record of records) {
      for (const format of ["pkcs8", "jwk", "raw"]) {
        exported.push(await crypto.subtle.exportKey(format, record.privateKey).then(() => "exported", (e) => e.name));
      }
    }
    return {
      localStorage: all(localStorage),
      sessionStorage: all(sessionStorage),
      cookie: document.cookie,
      identities: records.map((r) => ({
        fields: Object.keys(r).sort(),
        extractable: r.privateKey.extractable,
        type: r.privateKey.type,
      })),
      exported,
    };
  });
}

test("the page makes an identity, connects to the server it came from at once, and shows who the server sees", async () => {
  // An earlier version of this page kept a text secret in localStorage: this one removes it.
  await page.goto(pageUrl);
  await page.evaluate(() => localStorage.setItem("sigil-demo-secret-key", "an old secret"));
  await page.reload();
  await page.waitForSelector("#state[data-state=open]", { timeout: 15_000 });
  const mine = await page.textContent("#my-fingerprint");
  assert.match(mine, /^SHA256:[A-Za-z0-9+/]{43}$/);
  // Prefilled from /server-key, with the plain note that it is no trust anchor.
  assert.equal(await page.inputValue("#server-key"), serverKey);
  assert.ok(await page.isVisible("#prefill-note"));
  assert.match(await page.textContent("#prefill-note"), /not a trust anchor/);
  assert.match(await page.textContent("#server-fingerprint"), /^SHA256:/);
  // session.whoami: the server sees this browser's identity.
  await page.waitForFunction(() => document.querySelector("#whoami").textContent.startsWith("SHA256:"));
  assert.ok((await page.textContent("#whoami")).startsWith(`${mine} from 127.0.0.1:`));
  assert.match(await page.textContent("#session-hash"), /^[0-9a-f]{64}$/);
  const ms = await page.getAttribute("#state", "data-handshake-ms");
  console.log(`connect in headless Chromium (WebSocket open + sigil/1 handshake, WebCrypto identity): ${ms} ms`);
});

test("no script-readable storage holds a secret; the stored private key cannot be exported; the identity survives a reload", async () => {
  const mine = await page.textContent("#my-fingerprint");
  const storage = await scriptReadableStorage();
  assert.deepEqual(storage.localStorage, {});
  assert.deepEqual(storage.sessionStorage, {});
  assert.equal(storage.cookie, "");
  assert.deepEqual(storage.identities, [{ fields: ["privateKey", "publicKey"], extractable: false, type: "private" }]);
  assert.deepEqual(storage.exported, ["InvalidAccessError", "InvalidAccessError", "InvalidAccessError"]);
  await page.reload();
  await page.waitForSelector("#state[data-state=open]", { timeout: 15_000 });
  assert.equal(await page.textContent("#my-fingerprint"), mine);
  await page.waitForFunction(() => document.querySelector("#whoami").textContent.startsWith("SHA256:"));
  assert.ok((await page.textContent("#whoami")).startsWith(mine));
});

/** Runs `action`, then waits for `selector`'s output to change and returns its text. */
async function outcome(selector, action) {
  const before = await page.textContent(selector);
  await action();
  await page.waitForFunction(
    ([sel, old]) => {
      const el = document.querySelector(sel);
      return el.textContent !== old && el.className !== "busy";
    },
    [selector, before],
  );
  return (await page.textContent(selector)).trim();
}

test("calls show their result beside the object, with the call's latency", async () => {
  await page.fill("#calc-a", "6");
  await page.fill("#calc-b", "3");
  await page.selectOption("#calc-op", "div");
  assert.match(await outcome("#calc-result", () => page.click("#calc-run")), /^calculator\.div\(6, 3\) → 2 \d+\.\d ms$/);
  await page.fill("#calc-b", "0");
  const byZero = await outcome("#calc-result", () => page.click("#calc-run"));
  assert.match(byZero, /application_error: division by zero/);
  assert.equal(await page.getAttribute("#calc-result", "class"), "error");
  await page.selectOption("#calc-op", "add");
  await page.fill("#calc-b", "1.5");
  assert.match(await outcome("#calc-result", () => page.click("#calc-run")), /add\(6, 1\.5\) → 7\.5 /);

  // An empty field is not sent as 0: nothing goes out, and the field says why.
  const frames = (await traceLines()).length;
  await page.fill("#calc-b", "");
  assert.match(await outcome("#calc-result", () => page.click("#calc-run")), /nothing was sent/);
  assert.equal(await page.getAttribute("#calc-b", "aria-invalid"), "true");
  await page.waitForTimeout(100);
  assert.equal((await traceLines()).length, frames);

  // Keyboard: Enter in the text field submits the echo form.
  await page.fill("#echo-text", "héllo, sigil ✓");
  await page.focus("#echo-text");
  const echoed = await outcome("#echo-result", () => page.keyboard.press("Enter"));
  assert.match(echoed, /^echo\.echo\("héllo, sigil ✓"\) → "héllo, sigil ✓" \d/);

  await page.fill("#kv-key", "colour");
  await page.fill("#kv-value", "blue");
  assert.match(await outcome("#kv-result", () => page.click("#kv-set")), /kv\.set\("colour", "blue"\) → null /);
  assert.match(await outcome("#kv-result", () => page.click("#kv-get")), /kv\.get\("colour"\) → "blue" /);
  assert.match(await outcome("#kv-result", () => page.click("#kv-delete")), /kv\.delete\("colour"\) → true /);
  assert.match(await outcome("#kv-result", () => page.click("#kv-get")), /kv\.get\("colour"\) → null /);
  await page.fill("#calc-b", "0");
  await page.selectOption("#calc-op", "div");
  await outcome("#calc-result", () => page.click("#calc-run"));
});

test("the protocol log shows the handshake and every frame, numbered, both ways", async () => {
  const lines = await traceLines();
  const at = lines.findLastIndex((l) => l.includes("connecting to"));
  const recent = lines.slice(at);
  assert.match(recent[1], /→hello \(message 1\) · 110 B$/);
  assert.match(recent[2], /←answer \(message 2\) · 70 B$/);
  assert.match(recent[3], /✓session [0-9a-f]{16}…$/);
  const frames = recent.slice(4).map((l) => /([→←])frame #(\d+) · (\d+) B(?: · .*)?$/.exec(l)).filter(Boolean);
  for (const dir of ["→", "←"]) {
    const seqs = frames.filter((f) => f[1] === dir).map((f) => Number(f[2]));
    assert.ok(seqs.length >= 8, `${dir}: ${seqs}`);
    assert.deepEqual(seqs, seqs.map((_, i) => i), `${dir} frames are numbered from 0, one by one`);
  }
  assert.ok(frames.every((f) => Number(f[3]) > 45), "a frame is 45 bytes of header and tag, and its payload");
  // What the page sent is named beside its frame.
  assert.ok(recent.some((l) => /→frame #\d+ · \d+ B · calculator\.div\(6, 3\)$/.test(l)), recent.join("\n"));
});

test("the live panel shows ticks as they come, stops a ticker, and watches a key", async () => {
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
    const identity = await mod.Identity.generate();
    const other = await mod.Client.connect(url, { serverKey, identity });
    await other.call("kv", "set", [key, "green"]);
    other.close();
  }, key);
  await page.waitForFunction(() => document.querySelector("#watch-value").textContent === '"green"');
  await page.fill("#kv-key", key);
  await page.fill("#kv-value", "red");
  await page.click("#kv-set");
  await page.waitForFunction(() => document.querySelector("#watch-value").textContent === '"red"');
  assert.deepEqual(await page.locator("#watch-history li").allTextContents(), ['"green"', "(absent)"]);

  // A ticker left running for the screenshot.
  await page.fill("#ticker-count", "10000");
  await page.fill("#ticker-interval", "250");
  await page.click("#ticker-toggle");
  await page.waitForFunction(() => Number(document.querySelector("#ticker-value").dataset.ticks) >= 2);
});

/** The page's size, and the boxes of the main flow's parts. */
function layout(p) {
  return p.evaluate(() => {
    const box = (sel) => {
      const r = document.querySelector(sel).getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, left: r.left, right: r.right };
    };
    return {
      width: document.documentElement.scrollWidth,
      height: document.documentElement.scrollHeight,
      parts: Object.fromEntries(
        ["#identity-card", "#connect-form", "#session-details", "#calc-result", "#kv-result", "#watch-form", "#trace", "#my-fingerprint", "#whoami"].map(
          (sel) => [sel, box(sel)],
        ),
      ),
    };
  });
}

test("the whole flow fits one desktop screen (1280×800); screenshot", async () => {
  await shot(page, "demo-desktop.png");
  const { width, height, parts } = await layout(page);
  assert.ok(width <= DESKTOP.width && height <= DESKTOP.height, `page is ${width}×${height}`);
  for (const [sel, r] of Object.entries(parts)) {
    assert.ok(r.bottom <= DESKTOP.height && r.right <= DESKTOP.width, `${sel} is off screen: ${JSON.stringify(r)}`);
  }
});

test("at 390 px wide the page is one column, nothing overflows sideways; screenshot", async () => {
  const context = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true });
  const phone = await watched(context);
  await phone.goto(pageUrl);
  await phone.waitForSelector("#state[data-state=open]", { timeout: 15_000 });
  await phone.waitForFunction(() => document.querySelector("#whoami").textContent.startsWith("SHA256:"));
  await phone.click("#calc-run");
  await phone.waitForSelector("#calc-result.ok");
  const { width, parts } = await layout(phone);
  assert.ok(width <= PHONE.width, `the page is ${width} px wide`);
  for (const [sel, r] of Object.entries(parts)) assert.ok(r.right <= PHONE.width, `${sel} overflows: ${JSON.stringify(r)}`);
  await shot(phone, "demo-phone.png", true);
  await phone.evaluate(() => window.scrollTo(0, 0));
  await shot(phone, "demo-phone-screen.png");
  await context.close();
});

test("a wrong pinned server key is refused, in one message", async () => {
  await page.fill("#server-key", randomBytes(32).toString("base64"));
  await page.click("#connect");
  await page.waitForSelector("#refusal:not([hidden])");
  const text = await page.textContent("#refusal");
  assert.match(text, /Refused \(code 1\): handshake failed/);
  assert.equal(await page.getAttribute("#state", "data-state"), "refused");
  assert.equal(await page.locator("[role=alert]:visible").count(), 1);
  assert.ok((await traceLines()).some((l) => /←refusal · code 1 · “handshake failed”/.test(l)));
  await shot(page, "refusal.png");
  // The right key again: connected, the message gone.
  await page.fill("#server-key", serverKey);
  await page.click("#connect");
  await page.waitForSelector("#state[data-state=open]");
  assert.ok(await page.isHidden("#refusal"));
});

test("many calls in flight on one socket, then disconnect", async () => {
  const results = await page.evaluate(async () => {
    const mod = await import("./pkg/sigil_wasm.js");
    const serverKey = document.querySelector("#server-key").value;
    const url = document.querySelector("#server-url").value;
    const c = await mod.Client.connect(url, { serverKey, identity: await mod.Identity.generate() });
    const out = await Promise.all(Array.from({ length: 64 }, (_, i) => c.call("echo", "echo", [i])));
    c.close();
    const after = await c.call("echo", "echo", [1]).catch((e) => `${e.name}:${e.code}`);
    return { out, after };
  });
  assert.deepEqual(results.out, Array.from({ length: 64 }, (_, i) => i));
  assert.equal(results.after, "SigilConnectionError:connection_closed");

  await page.click("#disconnect");
  await page.waitForSelector("#state[data-state=closed]");
  assert.ok(await page.isDisabled("#calc-run"));
  assert.ok((await traceLines()).at(-1).endsWith("close 1000 by client"));
});

test("without WebCrypto X25519 the page says so, and uses a text key only when asked", async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  // A browser without X25519 in WebCrypto, as older ones are.
  await context.addInitScript(() => {
    const generateKey = crypto.subtle.generateKey.bind(crypto.subtle);
    crypto.subtle.generateKey = (algorithm, ...rest) =>
      algorithm && algorithm.name === "X25519"
        ? Promise.reject(new DOMException("Unrecognized name", "NotSupportedError"))
        : generateKey(algorithm, ...rest);
  });
  const old = await watched(context);
  await old.goto(pageUrl);
  await old.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  assert.ok(await old.isVisible("#fallback"));
  assert.match(await old.textContent("#fallback"), /cannot keep a key that scripts cannot read/);
  assert.equal(await old.textContent("#my-fingerprint"), "—");
  assert.equal(await old.getAttribute("#state", "data-state"), "idle"); // no key: no connection
  await shot(old, "fallback.png");
  await old.click("#use-text-key");
  await old.waitForSelector("#state[data-state=open]", { timeout: 15_000 });
  assert.match(await old.textContent("#identity-note"), /scripts on this page can read it/);
  const storage = await scriptReadableStorage(old);
  assert.deepEqual([storage.localStorage, storage.sessionStorage, storage.identities], [{}, {}, []]);
  await context.close();
});

test("the minimal page of the book (hello.html) is prefilled, connects, calls and shows the error", async () => {
  const origin = new URL(pageUrl).origin;
  const hello = await watched(await browser.newContext({ viewport: { width: 800, height: 500 } }));
  await hello.goto(`${origin}/hello.html`);
  await hello.waitForFunction(() => document.getElementById("server-key").value !== "");
  assert.equal(await hello.inputValue("#server-key"), serverKey);
  await hello.click("#go");
  await hello.waitForFunction(() => document.getElementById("out").textContent.includes("closed"), null, {
    timeout: 15_000,
  });
  const out = await hello.textContent("#out");
  assert.match(out, /^connected as SHA256:[A-Za-z0-9+/]{43}$/m);
  assert.match(out, /^1 \+ 2 = 3$/m);
  assert.match(out, /^1 \/ 0: SigilRpcError application_error$/m);
  await shot(hello, "hello.png");
  // With a wrong key it says it was refused.
  await hello.reload();
  await hello.waitForFunction(() => document.getElementById("server-key").value !== "");
  await hello.fill("#server-key", randomBytes(32).toString("base64"));
  await hello.click("#go");
  await hello.waitForFunction(() => document.getElementById("out").textContent.includes("not connected"));
  assert.match(await hello.textContent("#out"), /not connected: SigilRefused 1: /);
});

test("no console errors or CSP violations", () => {
  assert.deepEqual(problems, []);
});
