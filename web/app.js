// The sigil demo page: a key pair kept in localStorage, a pinned server key,
// and calls to the demo objects through the sigil-wasm client.

const STORAGE_KEY = "sigil-demo-secret-key";

const $ = (id) => document.getElementById(id);

let sigil = null; // the wasm module's exports, once loaded
let client = null; // the open Client, if any

// ---------- results log ----------

function show(value) {
  return value === undefined ? "undefined" : JSON.stringify(value);
}

function log(kind, label, text) {
  const item = document.createElement("li");
  item.className = kind;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = label;
  const outcome = document.createElement("span");
  outcome.className = "outcome";
  outcome.textContent = text;
  item.append(what, " ", outcome);
  $("log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function describeError(err) {
  if (err && err.name === "SigilRpcError") return `error ${err.code}: ${err.message.replace(/^[a-z_]+: /, "")}`;
  if (err && err.code !== undefined) return `${err.name} (${err.code}): ${err.message}`;
  return String(err && err.message ? err.message : err);
}

// ---------- the browser's key pair ----------

function loadOrMakeKey() {
  let secret = null;
  try {
    secret = localStorage.getItem(STORAGE_KEY);
  } catch {
    // localStorage can be unavailable (private mode, blocked storage): keep the key in memory only.
  }
  let pub = null;
  if (secret) {
    try {
      pub = sigil.publicKey(secret);
    } catch {
      secret = null; // unreadable: replace it
    }
  }
  if (!secret) {
    const pair = sigil.generateKeyPair();
    secret = pair.secretKey;
    pub = pair.publicKey;
    try {
      localStorage.setItem(STORAGE_KEY, secret);
    } catch {
      log("info", "key", "localStorage is not available: this key pair lasts until the page is closed.");
    }
  }
  return { secret, pub };
}

let me = null;

function showMyKey() {
  $("my-public-key").textContent = me.pub;
  $("my-fingerprint").textContent = sigil.fingerprint(me.pub);
}

function newKey() {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
  me = loadOrMakeKey();
  showMyKey();
  log("info", "key", "Made a new key pair. Reconnect to use it.");
}

function forgetKey() {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
  log("info", "key", "Deleted the stored secret key. A new one is made when the page loads again; this page keeps using the current one until then.");
}

// ---------- the server ----------

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return location.host ? `${scheme}//${location.host}/sigil` : "ws://127.0.0.1:7070/sigil";
}

function showServerFingerprint() {
  const text = $("server-key").value.trim();
  const out = $("server-fingerprint");
  if (!text) {
    out.textContent = "—";
    return;
  }
  try {
    out.textContent = sigil.fingerprint(text);
  } catch (err) {
    out.textContent = `not a public key (${err.message})`;
  }
}

async function prefillServerKey() {
  // A convenience only: the answer comes from the same place as this page.
  try {
    const resp = await fetch("./server-key", { cache: "no-store" });
    if (!resp.ok) return;
    const info = await resp.json();
    if (typeof info.public_key === "string" && !$("server-key").value) {
      $("server-key").value = info.public_key;
      $("prefill-note").hidden = false;
      showServerFingerprint();
    }
  } catch {
    // Not served by a sigil server: the key must be pasted.
  }
}

function setStatus(state, text) {
  const el = $("connection-status");
  el.dataset.state = state;
  el.textContent = text;
}

function setConnected(connected) {
  for (const fs of document.querySelectorAll("form.call fieldset")) fs.disabled = !connected;
  $("live").hidden = !connected;
  $("connect").disabled = connected;
  $("disconnect").disabled = !connected;
  $("server-url").readOnly = connected;
  $("server-key").readOnly = connected;
  $("session-details").hidden = !connected;
}

const REFUSAL_HINTS = {
  1: "Check the pinned server key (compare the fingerprints), that the server accepts this browser's key, and the psk and prologue.",
  2: "The server's application turned this client away.",
  3: "The server is busy: try again later.",
  4: "The server speaks another protocol version.",
  5: "The hello was stale or replayed: check this computer's clock.",
};

function para(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function showRefusal(err) {
  const box = $("refusal");
  const title = document.createElement("strong");
  if (err.name === "SigilRefused") {
    title.textContent = `Refused by the server (refusal code ${err.code})`;
    box.replaceChildren(
      title,
      para(`The server's reason: “${err.reason}”.`),
      para(REFUSAL_HINTS[err.code] ?? "An unknown refusal code."),
      para("Refusals are not authenticated: they inform, they prove nothing."),
    );
  } else {
    title.textContent = `Could not connect (${err.code ?? err.name})`;
    box.replaceChildren(title, para(err.message));
  }
  box.hidden = false;
}

async function connect(event) {
  event.preventDefault();
  if (client) return;
  $("refusal").hidden = true;
  const url = $("server-url").value.trim();
  const serverKey = $("server-key").value.trim();
  if (!serverKey) {
    setStatus("error", "Paste the server's public key first.");
    $("server-key").focus();
    return;
  }
  setStatus("busy", `Connecting to ${url}…`);
  $("connect").disabled = true;
  const started = performance.now();
  try {
    const c = await sigil.Client.connect(url, { serverKey, secretKey: me.secret, timeoutMs: 10000 });
    const ms = performance.now() - started;
    client = c;
    $("session-hash").textContent = c.sessionHash;
    setConnected(true);
    setStatus("connected", `Connected to ${url} (handshake in ${ms.toFixed(1)} ms).`);
    $("connection-status").dataset.handshakeMs = ms.toFixed(1);
    log("info", "connect", `connected; session hash ${c.sessionHash.slice(0, 16)}…`);
    // Who the server thinks this browser is (session.whoami of the demo).
    c.call("session", "whoami", [], { timeoutMs: 5000 }).then(
      (who) => { $("whoami").textContent = `${who.fingerprint} from ${who.address}`; },
      (err) => { $("whoami").textContent = `unknown (${err.code ?? err.name})`; },
    );
    c.closed.then((why) => {
      if (client !== c) return;
      client = null;
      setConnected(false);
      setStatus(why ? "error" : "idle", why ? `Disconnected: ${why.message}` : "Disconnected.");
      if (why) log("error", "connection", describeError(why));
    });
  } catch (err) {
    $("connect").disabled = false;
    setStatus("error", err.name === "SigilRefused" ? "Refused by the server." : "Not connected.");
    showRefusal(err);
    log("error", "connect", describeError(err));
  }
}

function disconnect() {
  if (client) {
    const c = client;
    client = null;
    c.close();
    setConnected(false);
    setStatus("idle", "Disconnected.");
  }
}

// ---------- calls ----------

async function call(object, method, args) {
  const label = `${object}.${method}(${args.map(show).join(", ")})`;
  if (!client) {
    log("error", label, "not connected");
    return;
  }
  try {
    const result = await client.call(object, method, args);
    log("ok", label, `→ ${show(result)}`);
  } catch (err) {
    log("error", label, `→ ${describeError(err)}`);
  }
}

function onCalc(event) {
  event.preventDefault();
  const a = Number($("calc-a").value);
  const b = Number($("calc-b").value);
  call("calculator", $("calc-op").value, [a, b]);
}

function onEcho(event) {
  event.preventDefault();
  call("echo", "echo", [$("echo-text").value]);
}

function onKv(event) {
  event.preventDefault();
  const method = event.submitter ? event.submitter.value : "get";
  const key = $("kv-key").value;
  call("kv", method, method === "set" ? [key, $("kv-value").value] : [key]);
}

// ---------- live: streams ----------

// A stream the page shows: its AbortController while it runs, and its elements.
function liveStream(name, idleLabel, runLabel) {
  return { name, idleLabel, runLabel, controller: null };
}

const ticker = liveStream("ticker", "Start", "Stop");
const watcher = liveStream("watch", "Watch", "Stop");

function setLive(live, state, text) {
  const status = $(`${live.name}-status`);
  status.dataset.state = state;
  status.textContent = text;
  $(`${live.name}-toggle`).textContent = state === "running" ? live.runLabel : live.idleLabel;
}

// Runs one stream until it ends, fails or is stopped, calling onItem(item) for each item.
async function runLive(live, object, method, args, onItem) {
  if (!client) return;
  const controller = new AbortController();
  live.controller = controller;
  const label = `${object}.${method}(${args.map(show).join(", ")})`;
  setLive(live, "running", `${label}: running…`);
  try {
    for await (const item of client.stream(object, method, args, { signal: controller.signal })) {
      onItem(item);
    }
    setLive(live, "done", `${label}: ended by the server.`);
  } catch (err) {
    if (err.code === "cancelled") {
      setLive(live, "stopped", `${label}: stopped.`);
    } else {
      setLive(live, "error", `${label}: ${describeError(err)}`);
      if (err.code !== "connection_closed") log("error", label, `→ ${describeError(err)}`);
    }
  } finally {
    if (live.controller === controller) live.controller = null;
  }
}

// The toggle button: stop the stream if it runs (its signal cancels it), else start it.
function toggle(live, start) {
  return (event) => {
    event.preventDefault();
    if (live.controller) live.controller.abort();
    else start();
  };
}

let ticks = 0;

function startTicker() {
  const n = Math.trunc(Number($("ticker-count").value));
  const interval = Math.trunc(Number($("ticker-interval").value));
  ticks = 0;
  $("ticker-value").textContent = "—";
  runLive(ticker, "clock", "ticker", [n, interval], (tick) => {
    ticks += 1;
    $("ticker-value").textContent = String(tick);
    $("ticker-value").dataset.ticks = String(ticks);
  });
}

const HISTORY = 8;

function startWatch() {
  const value = $("watch-value");
  const history = $("watch-history");
  value.textContent = "—";
  history.replaceChildren();
  runLive(watcher, "kv", "watch", [$("watch-key").value], (item) => {
    if (value.textContent !== "—") {
      const old = document.createElement("li");
      old.textContent = value.textContent;
      history.prepend(old);
      while (history.children.length > HISTORY) history.lastElementChild.remove();
    }
    value.textContent = item === null ? "(absent)" : show(item);
  });
}

// ---------- start ----------

async function main() {
  $("server-url").value = defaultUrl();
  try {
    const module = await import("./pkg/sigil_wasm.js");
    await module.default();
    sigil = module;
  } catch (err) {
    $("load-status").textContent =
      `The sigil module did not load (${err.message}). Build it first: see web/BUILD.md.`;
    $("load-status").dataset.state = "error";
    return;
  }
  me = loadOrMakeKey();
  showMyKey();
  $("new-key").addEventListener("click", newKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("server-key").addEventListener("input", showServerFingerprint);
  $("connect-form").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", disconnect);
  $("calc-form").addEventListener("submit", onCalc);
  $("echo-form").addEventListener("submit", onEcho);
  $("kv-form").addEventListener("submit", onKv);
  $("ticker-form").addEventListener("submit", toggle(ticker, startTicker));
  $("watch-form").addEventListener("submit", toggle(watcher, startWatch));
  $("clear-log").addEventListener("click", () => $("log").replaceChildren());
  await prefillServerKey();
  $("load-status").textContent = "Ready.";
  $("load-status").dataset.state = "ready";
  document.body.dataset.ready = "true";
}

main();
