// The browser client against real servers that this test starts, stops and
// restarts: identities a server authorises by their public key, an identity
// that survives a page reload, and reconnecting after the server went away.
//
//   node --test web/tests/client.mjs      (cargo xtask test runs it in the e2e step)
//
// Needs web/pkg built and target/debug/sigil (or $SIGIL_BIN); Chromium as
// for e2e.mjs. The page (tests/harness.html) comes from a static server over
// web/ on another origin, so the servers allow any origin.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { SIGIL_BIN, launchChromium, startProxy, startSigil, startStaticServer, tempDir } from "./support.mjs";

const ANY_ORIGIN = 'allowed_origins = ["*"]\n';

let browser = null;
let page = null;
let files = null;
let dir = "";
const servers = [];
const problems = [];

/** Starts a server (stopped after the tests). */
async function serve(options) {
  const server = await startSigil(options);
  servers.push(server);
  return server;
}

async function openHarness() {
  await page.goto(`http://127.0.0.1:${files.address().port}/tests/harness.html`);
  await page.waitForSelector("body[data-ready=true]");
}

before(async () => {
  dir = await tempDir();
  files = await startStaticServer("");
  browser = await launchChromium();
  page = await browser.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Chromium logs each refused WebSocket (the attempts while a server is
  // down) as a console error: expected here; anything else is a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !/ERR_CONNECTION_REFUSED/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  await openHarness();
});

after(async () => {
  await browser?.close();
  if (files) await new Promise((r) => files.close(r));
  for (const s of servers) await s.stop({ kill: true });
});

test("a server that authorises an identity by its public key accepts it, and only it", async () => {
  const me = await page.evaluate(async () => {
    const id = await sigil.Identity.generate();
    await id.save("client-test");
    return { publicKey: id.publicKey, fingerprint: id.fingerprint };
  });
  const keys = path.join(dir, "authorized_keys");
  await writeFile(keys, `${me.publicKey} the browser's identity\n`);
  const server = await serve({ config: `${ANY_ORIGIN}authorized_keys = "${keys}"\n` });
  const outcome = await page.evaluate(
    async ({ url, serverKey }) => {
      const identity = await sigil.Identity.load("client-test");
      const client = await sigil.Client.connect(url, { serverKey, identity });
      const who = await client.call("session", "whoami", []);
      client.close();
      const refused = async (options) => {
        try {
          (await sigil.Client.connect(url, { serverKey, ...options })).close();
          return "accepted";
        } catch (e) {
          return `${e.name} ${e.code}`;
        }
      };
      return {
        who: who.fingerprint,
        otherIdentity: await refused({ identity: await sigil.Identity.generate() }),
        textKey: await refused({ secretKey: sigil.generateKeyPair().secretKey }),
      };
    },
    { url: server.url, serverKey: server.key },
  );
  assert.equal(outcome.who, me.fingerprint);
  assert.equal(outcome.otherIdentity, "SigilRefused 1");
  assert.equal(outcome.textKey, "SigilRefused 1");

  // The identity survives a reload of the page: same key, still accepted.
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  const again = await page.evaluate(
    async ({ url, serverKey }) => {
      const identity = await sigil.Identity.load("client-test");
      const extractable = identity.privateKey.extractable;
      const client = await sigil.Client.connect(url, { serverKey, identity });
      const who = await client.call("session", "whoami", []);
      client.close();
      await sigil.Identity.delete("client-test");
      return { fingerprint: identity.fingerprint, extractable, who: who.fingerprint };
    },
    { url: server.url, serverKey: server.key },
  );
  assert.deepEqual(again, { fingerprint: me.fingerprint, extractable: false, who: me.fingerprint });
});

/** A server key file, so that a restarted server has the same key. */
function serverKeyFile(name) {
  const file = path.join(dir, name);
  execFileSync(SIGIL_BIN, ["keygen", "--out", file]);
  return file;
}

test("reconnect: the server stops and comes back; calls in flight fail, streams end, a new session follows", async () => {
  const config = `${ANY_ORIGIN}server_key = "${serverKeyFile("restart.key")}"\n`;
  let server = await serve({ config });
  await page.evaluate(
    async ({ url, serverKey }) => {
      window.states = [];
      const options = {
        serverKey,
        identity: await sigil.Identity.generate(),
        reconnect: { maxAttempts: 50, initialDelayMs: 50, maxDelayMs: 200 },
        onState: (change) => window.states.push(change),
      };
      const client = await sigil.Client.connect(url, options);
      window.client = client;
      window.firstSession = client.sessionHash;
      // In flight at the break: a slow call and a stream with a first item taken.
      window.slow = client.call("clock", "sleep", [30000]).then(
        () => "resolved",
        (e) => `${e.name} ${e.code}`,
      );
      const ticker = client.stream("clock", "ticker", [10000, 20]);
      await ticker.next();
      window.streamEnd = (async () => {
        try {
          for (;;) if ((await ticker.next()).done) return "done";
        } catch (e) {
          return `${e.name} ${e.code}`;
        }
      })();
    },
    { url: server.url, serverKey: server.key },
  );

  await server.stop({ kill: true });
  const broken = await page.evaluate(async () => {
    const slow = await window.slow;
    const stream = await window.streamEnd;
    while (window.client.state === "open") await new Promise((r) => setTimeout(r, 10));
    const meanwhile = await window.client.call("sigil", "ping").then(
      () => "resolved",
      (e) => `${e.name} ${e.code}`,
    );
    return { slow, stream, state: window.client.state, meanwhile };
  });
  assert.equal(broken.slow, "SigilConnectionError connection_closed");
  assert.equal(broken.stream, "SigilConnectionError connection_closed");
  assert.match(broken.state, /^(reconnecting|connecting)$/);
  assert.equal(broken.meanwhile, "SigilConnectionError connection_closed");

  // A few attempts fail while it is down; then it comes back on its port.
  await new Promise((r) => setTimeout(r, 600));
  server = await serve({ config, port: server.port });
  const back = await page.evaluate(async () => {
    const client = window.client;
    const deadline = Date.now() + 10000;
    while (client.state !== "open" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const pong = await client.call("sigil", "ping");
    const ticks = [];
    for await (const t of client.stream("clock", "ticker", [3, 10])) ticks.push(t);
    return {
      state: client.state,
      pong,
      ticks,
      newSession: client.sessionHash !== window.firstSession,
      states: window.states.map((s) => s.state),
      reconnecting: (({ attempt, delayMs, error }) => ({ attempt, delayMs, code: error.code }))(
        window.states.find((s) => s.state === "reconnecting"),
      ),
    };
  });
  assert.equal(back.state, "open");
  assert.equal(back.pong, "pong");
  assert.deepEqual(back.ticks, [0, 1, 2]);
  assert.ok(back.newSession, "a reconnect is a new session");
  assert.deepEqual(back.states.slice(0, 3), ["connecting", "open", "reconnecting"]);
  assert.equal(back.states.at(-1), "open");
  assert.ok(back.states.filter((s) => s === "reconnecting").length >= 2, `${back.states}`);
  assert.equal(back.reconnecting.attempt, 1);
  assert.ok(back.reconnecting.delayMs >= 25 && back.reconnecting.delayMs <= 50, `${back.reconnecting.delayMs}`);
  assert.equal(back.reconnecting.code, "connection_closed");

  // close() while open ends it for good.
  const closed = await page.evaluate(async () => {
    window.client.close();
    return { why: await window.client.closed, state: window.client.state };
  });
  assert.deepEqual(closed, { why: undefined, state: "closed" });
});

test("reconnect gives up after maxAttempts, and close() stops it while it waits", async () => {
  const server = await serve({ config: ANY_ORIGIN });
  const key = server.key;
  const url = server.url;
  await page.evaluate(
    async ({ url, serverKey }) => {
      const connect = (maxAttempts, initialDelayMs) =>
        sigil.Client.connect(url, {
          serverKey,
          secretKey: sigil.generateKeyPair().secretKey,
          reconnect: { maxAttempts, initialDelayMs, maxDelayMs: initialDelayMs },
        });
      window.givingUp = await connect(2, 20);
      window.waiting = await connect(5, 60000);
    },
    { url, serverKey: key },
  );
  await server.stop({ kill: true });
  const outcome = await page.evaluate(async () => {
    const why = await window.givingUp.closed;
    while (window.waiting.state === "open") await new Promise((r) => setTimeout(r, 10));
    const waitingState = window.waiting.state;
    window.waiting.close();
    return {
      gaveUp: `${why.name} ${why.code}`,
      message: why.message,
      waitingState,
      closedWhileWaiting: await window.waiting.closed,
      finalState: window.waiting.state,
    };
  });
  assert.equal(outcome.gaveUp, "SigilConnectionError connection_closed");
  assert.match(outcome.message, /gave up reconnecting after 2 attempts/);
  assert.equal(outcome.waitingState, "reconnecting");
  assert.equal(outcome.closedWhileWaiting, undefined);
  assert.equal(outcome.finalState, "closed");
});

test("the browser chapter's stream examples run as the book shows them", async () => {
  const server = await serve({ config: `${ANY_ORIGIN}allow_any_client = true\n` });
  const outcome = await page.evaluate(
    async ({ url, serverKey }) => {
      const ex = await import("../examples/streams.js");
      const identity = await sigil.Identity.generate();
      const client = await sigil.Client.connect(url, { serverKey, identity });
      const other = await sigil.Client.connect(url, { serverKey, identity });
      const ticks = await ex.ticks(client);

      // The watch sees the key absent, then each value set by another
      // connection, and ends at "done" (breaking out cancels it).
      const seen = [];
      const watching = ex.watchUntilDone(client, (v) => seen.push(v));
      const setWhenSeen = async (n, value) => {
        while (seen.length < n) await new Promise((r) => setTimeout(r, 10));
        await other.call("kv", "set", ["colour", value]);
      };
      await setWhenSeen(1, "blue");
      await setWhenSeen(2, "done");
      await watching;

      // The stop button: a tick, then a click, and the loop ends quietly.
      const stopButton = { onclick: null };
      const rendered = [];
      const stopped = ex.tickUntilStopped(client, stopButton, (t) => {
        rendered.push(t);
        stopButton.onclick();
      });
      await stopped;
      const error = await ex.refused(client);
      const ping = await client.call("sigil", "ping", []);
      client.close();
      other.close();
      return { ticks, seen, rendered, error, ping };
    },
    { url: server.url, serverKey: server.key },
  );
  assert.deepEqual(outcome, {
    ticks: [0, 1, 2, 3, 4],
    seen: [null, "blue", "done"],
    rendered: [0],
    error: "SigilRpcError invalid_arguments",
    ping: "pong",
  });
});

test("batching: calls made together travel together; a server without batching gets one frame per message", async () => {
  const server = await serve({ config: ANY_ORIGIN });
  const batching = await startProxy(server.port);
  const plain = await startProxy(server.port, { offer: "sigil.v1" });
  try {
    const run = (proxy) =>
      page.evaluate(
        async ({ url, serverKey }) => {
          const client = await sigil.Client.connect(url, { serverKey, secretKey: sigil.generateKeyPair().secretKey });
          // 64 calls in one task, then 64 more as the first ones come back.
          const sums = await Promise.all(
            Array.from({ length: 64 }, async (_, i) => [
              await client.call("calculator", "add", [i, 1]),
              await client.call("calculator", "add", [i, 2]),
            ]),
          );
          client.close();
          return sums.flat();
        },
        { url: `ws://127.0.0.1:${proxy.address().port}/sigil`, serverKey: server.key },
      );
    const expected = Array.from({ length: 64 }, (_, i) => [i + 1, i + 2]).flat();
    assert.deepEqual(await run(batching), expected);
    // Message 1, then the calls in a few messages (not 128).
    assert.ok(batching.sent >= 2 && batching.sent <= 12, `${batching.sent} messages with batching`);
    // Without batching, two frames in one message would close the session:
    // every call answered means one frame per message.
    assert.deepEqual(await run(plain), expected);
    assert.equal(plain.sent, 1 + 128);
    // close() in the task that made a oneway call and a call: the oneway
    // call still goes out, the call rejects, and nothing throws later
    // (the batch's microtask runs after the close; "no page errors" below).
    const closing = await page.evaluate(
      async ({ url, serverKey }) => {
        const secretKey = sigil.generateKeyPair().secretKey;
        const client = await sigil.Client.connect(url, { serverKey, secretKey });
        client.oneway("kv", "set", ["sent-before-close", "yes"]);
        const call = client.call("calculator", "add", [1, 2]).then(
          () => "resolved",
          (e) => e.code,
        );
        client.close();
        const again = await sigil.Client.connect(url, { serverKey, secretKey });
        const value = await again.call("kv", "get", ["sent-before-close"]);
        again.close();
        return { value, call: await call };
      },
      { url: server.url, serverKey: server.key },
    );
    assert.deepEqual(closing, { value: "yes", call: "connection_closed" });
    // The server logs each session's subprotocol.
    assert.match(server.logs(), /session with .* over sigil\.v1\.batch$/m);
    assert.match(server.logs(), /session with .* over sigil\.v1$/m);
  } finally {
    for (const p of [batching, plain]) await new Promise((r) => p.close(r));
  }
});

test("no page errors (refused connections aside)", () => {
  assert.deepEqual(problems, []);
});
