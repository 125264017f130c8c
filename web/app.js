// The sigil demo page: an identity no script can read (a WebCrypto key in
// IndexedDB), a pinned server key, calls to the demo objects with their
// latency, two live streams, and the protocol log (the client's onTrace).
// No secret is ever put in localStorage or any other storage a script can read.

const IDENTITY = "demo"; // the IndexedDB name of this page's identity
const OLD_SECRET = "sigil-demo-secret-key"; // where earlier versions of this page kept a text key
const TRACE_LINES = 300;

const $ = (id) => document.getElementById(id);

let sigil = null; // the module's exports, once loaded
let client = null; // the Client, while there is one
let me = null; // { identity } or, by the user's choice, { secretKey }; with fingerprint

// ---------- the connection state, at the top of the page ----------

const STATE_TEXT = {
  loading: "Loading…",
  idle: "Not connected",
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Connection lost: reconnecting…",
  closed: "Disconnected",
  refused: "Refused by the server",
  error: "Not connected",
};

function setState(state, text = STATE_TEXT[state]) {
  const pill = $("state");
  pill.dataset.state = state;
  pill.textContent = text;
}

function describeError(err) {
  if (err && err.name === "SigilRpcError") return `${err.code}: ${err.message.replace(/^[a-z_]+: /, "")}`;
  if (err && err.code !== undefined) return `${err.name} (${err.code}): ${err.message}`;
  return String(err && err.message ? err.message : err);
}

function show(value) {
  return value === undefined ? "undefined" : JSON.stringify(value);
}

// ---------- the protocol log ----------

let traceStart = 0;
let sending = null; // what the page is sending: the label of the next outgoing frame

function traceText(e) {
  switch (e.kind) {
    case "connecting":
      return [" ", `connecting to ${e.url}${e.attempt ? ` (attempt ${e.attempt})` : ""}`];
    case "hello":
      return ["→", `hello (message 1) · ${e.bytes} B`];
    case "answer":
      return ["←", `answer (message 2) · ${e.bytes} B`];
    case "refusal":
      return ["←", `refusal · code ${e.code} · “${e.reason}”`];
    case "session":
      return ["✓", `session ${e.sessionHash.slice(0, 16)}…`];
    case "frame": {
      const what = e.dir === "out" && sending ? ` · ${sending}` : "";
      if (e.dir === "out") sending = null;
      return [e.dir === "out" ? "→" : "←", `frame #${e.seq} · ${e.bytes} B${what}`];
    }
    case "close":
      return ["×", `close ${e.code} by ${e.by}${e.reason ? ` · ${e.reason}` : ""}`];
    default:
      return [" ", JSON.stringify(e)];
  }
}

function onTrace(entry) {
  const now = performance.now();
  if (entry.kind === "connecting") traceStart = now;
  const [mark, text] = traceText(entry);
  const li = document.createElement("li");
  li.className = `trace-${entry.kind} ${entry.dir ?? ""}`.trim();
  const time = document.createElement("span");
  time.className = "t";
  time.textContent = `${(now - traceStart).toFixed(1)} ms`;
  const arrow = document.createElement("span");
  arrow.className = "mark";
  arrow.textContent = mark;
  li.append(time, arrow, text);
  const list = $("trace");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  while (list.children.length > TRACE_LINES) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---------- this browser's identity ----------

function forgetOldSecret() {
  try {
    localStorage.removeItem(OLD_SECRET);
  } catch {
    // storage blocked: nothing was stored either
  }
}

function showIdentity() {
  $("my-fingerprint").textContent = me ? me.fingerprint : "—";
}

/** Loads the saved identity or makes one; null where WebCrypto X25519 is missing. */
async function loadIdentity() {
  try {
    let identity = await sigil.Identity.load(IDENTITY);
    if (!identity) {
      identity = await sigil.Identity.generate();
      await identity.save(IDENTITY);
    }
    return { identity, fingerprint: identity.fingerprint };
  } catch (err) {
    if (err.code === "storage_failed") {
      // No IndexedDB here (a private window, say): a key for this visit only.
      const identity = await sigil.Identity.generate();
      $("identity-note").textContent =
        "Private key: a WebCrypto key scripts cannot read. IndexedDB is not available, so it lasts until this tab closes.";
      return { identity, fingerprint: identity.fingerprint };
    }
    if (err.code === "unsupported") return null;
    throw err;
  }
}

async function newIdentity() {
  try {
    if (me && me.identity) {
      const identity = await sigil.Identity.generate();
      await identity.save(IDENTITY);
      me = { identity, fingerprint: identity.fingerprint };
    } else {
      useTextKey();
    }
    showIdentity();
    if (client) await connect();
  } catch (err) {
    setState("error", `Cannot make an identity: ${describeError(err)}`);
  }
}

async function forgetIdentity() {
  await sigil.Identity.delete(IDENTITY).catch(() => {});
  $("identity-note").textContent =
    "Deleted from IndexedDB. This page keeps using it until you reload; then a new one is made.";
}

/** The user's explicit choice where WebCrypto X25519 is missing: a text key, in memory only. */
function useTextKey() {
  const pair = sigil.generateKeyPair();
  me = { secretKey: pair.secretKey, fingerprint: sigil.fingerprint(pair.publicKey) };
  $("fallback").hidden = true;
  $("identity-note").hidden = false;
  $("new-identity").hidden = false;
  $("identity-note").textContent =
    "A temporary text key, in this tab's memory only: scripts on this page can read it. Gone when the tab closes.";
  showIdentity();
}

// ---------- the server ----------

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return location.host ? `${scheme}//${location.host}/sigil` : "ws://127.0.0.1:7070/sigil";
}

function showServerFingerprint() {
  const text = $("server-key").value.trim();
  const out = $("server-fingerprint");
  try {
    out.textContent = text ? sigil.fingerprint(text) : "—";
  } catch {
    out.textContent = "not a public key";
  }
}

/** Fills in the key of the server that sent this page; true if it did. */
async function prefillServerKey() {
  try {
    const resp = await fetch("./server-key", { cache: "no-store" });
    if (!resp.ok) return false;
    const info = await resp.json();
    if (typeof info.public_key !== "string" || $("server-key").value) return false;
    $("server-key").value = info.public_key;
    $("prefill-note").hidden = false;
    showServerFingerprint();
    return true;
  } catch {
    return false; // not served by a sigil server: the key must be pasted
  }
}

function setConnected(connected) {
  for (const fs of document.querySelectorAll("form.call fieldset")) fs.disabled = !connected;
  $("disconnect").disabled = !connected;
  $("session-details").hidden = !connected;
}

const REFUSAL_HINTS = {
  1: "Check the pinned server key (compare the fingerprints) and that the server accepts this browser's key.",
  2: "The server's application turned this client away.",
  3: "The server is busy: try again later.",
  4: "The server speaks another protocol version.",
  5: "The hello was stale or replayed: check this computer's clock.",
};

function showRefusal(err) {
  const box = $("refusal");
  const title = document.createElement("strong");
  const detail = document.createElement("p");
  if (err.name === "SigilRefused") {
    title.textContent = `Refused (code ${err.code}): ${err.reason}`;
    detail.textContent = `${REFUSAL_HINTS[err.code] ?? ""} Refusals are not authenticated: they inform, they prove nothing.`;
  } else {
    title.textContent = `Could not connect (${err.code ?? err.name})`;
    detail.textContent = err.message;
  }
  box.replaceChildren(title, detail);
  box.hidden = false;
}

async function showSession(c) {
  $("session-hash").textContent = c.sessionHash;
  sending = "session.whoami()";
  try {
    const who = await c.call("session", "whoami", [], { timeoutMs: 5000 });
    $("whoami").textContent = `${who.fingerprint}${who.name ? ` (${who.name})` : ""} from ${who.address}`;
  } catch (err) {
    $("whoami").textContent = `unknown (${err.code ?? err.name})`;
  }
}

function onState(change) {
  if (!client) return; // the state of a connection being made, or of an old one
  if (change.state === "open") {
    setState("open");
    setConnected(true);
    showSession(client);
  } else if (change.state === "reconnecting") {
    setConnected(false);
    setState("reconnecting", `Connection lost: reconnecting (attempt ${change.attempt})…`);
  } else if (change.state === "closed" && change.error) {
    setConnected(false);
    setState("closed", `Disconnected: ${change.error.message}`);
    client = null;
  }
}

async function connect(event) {
  event?.preventDefault();
  if (!me) {
    setState("error", "No key yet: choose one above.");
    $("use-text-key").focus();
    return;
  }
  disconnect();
  $("refusal").hidden = true;
  const url = $("server-url").value.trim();
  const serverKey = $("server-key").value.trim();
  if (!serverKey) {
    setState("error", "Paste the server's public key first.");
    $("server-key").focus();
    return;
  }
  setState("connecting");
  $("connect").disabled = true;
  const started = performance.now();
  const options = { serverKey, ...me, reconnect: true, onState, onTrace, timeoutMs: 10000 };
  delete options.fingerprint;
  try {
    const c = await sigil.Client.connect(url, options);
    const ms = performance.now() - started;
    client = c;
    setState("open", `Connected · handshake ${ms.toFixed(1)} ms`);
    $("state").dataset.handshakeMs = ms.toFixed(1);
    setConnected(true);
    await showSession(c);
  } catch (err) {
    setState(err.name === "SigilRefused" ? "refused" : "error");
    showRefusal(err);
  } finally {
    $("connect").disabled = false;
  }
}

function disconnect() {
  if (!client) return;
  const c = client;
  client = null;
  c.close();
  setConnected(false);
  setState("closed");
}

// ---------- calls ----------

/** Calls object.method(args) and shows the result, or the error, with the call's latency in `out`. */
async function call(out, object, method, args) {
  const label = `${object}.${method}(${args.map(show).join(", ")})`;
  out.className = "busy";
  out.textContent = `${label} …`;
  const started = performance.now();
  sending = label;
  try {
    const result = await client.call(object, method, args);
    out.className = "ok";
    out.textContent = `${label} → ${show(result)}`;
  } catch (err) {
    out.className = "error";
    out.textContent = `${label} → ${describeError(err)}`;
  }
  const ms = performance.now() - started;
  const latency = document.createElement("span");
  latency.className = "latency";
  latency.textContent = `${ms.toFixed(1)} ms`;
  out.append(" ", latency);
}

/** The number in `input`, or null (marked invalid) when it is empty or not a number. */
function numberIn(input) {
  const text = input.value.trim();
  const n = Number(text);
  const ok = text !== "" && input.validity.valid && Number.isFinite(n);
  input.setAttribute("aria-invalid", String(!ok));
  return ok ? n : null;
}

function onCalc(event) {
  event.preventDefault();
  const a = numberIn($("calc-a"));
  const b = numberIn($("calc-b"));
  const out = $("calc-result");
  if (a === null || b === null) {
    out.className = "error";
    out.textContent = "Enter a number in both fields (nothing was sent).";
    (a === null ? $("calc-a") : $("calc-b")).focus();
    return;
  }
  call(out, "calculator", $("calc-op").value, [a, b]);
}

function onEcho(event) {
  event.preventDefault();
  call($("echo-result"), "echo", "echo", [$("echo-text").value]);
}

function onKv(event) {
  event.preventDefault();
  const method = event.submitter ? event.submitter.value : "get";
  const key = $("kv-key").value;
  call($("kv-result"), "kv", method, method === "set" ? [key, $("kv-value").value] : [key]);
}

// ---------- live: streams ----------

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

/** Runs one stream until it ends, fails or is stopped, calling onItem(item) for each item. */
async function runLive(live, object, method, args, onItem) {
  if (!client) return;
  const controller = new AbortController();
  live.controller = controller;
  const label = `${object}.${method}(${args.map(show).join(", ")})`;
  setLive(live, "running", "running…");
  sending = label;
  try {
    for await (const item of client.stream(object, method, args, { signal: controller.signal })) {
      onItem(item);
    }
    setLive(live, "done", "ended by the server.");
  } catch (err) {
    if (err.code === "cancelled") setLive(live, "stopped", "stopped.");
    else setLive(live, "error", `${label}: ${describeError(err)}`);
  } finally {
    if (live.controller === controller) live.controller = null;
  }
}

function toggle(live, start) {
  return (event) => {
    event.preventDefault();
    if (live.controller) live.controller.abort();
    else start();
  };
}

let ticks = 0;

function startTicker() {
  const n = numberIn($("ticker-count"));
  const interval = numberIn($("ticker-interval"));
  if (n === null || interval === null) {
    setLive(ticker, "error", "Enter whole numbers: 1 to 10000 ticks, every 10 ms or more.");
    return;
  }
  ticks = 0;
  $("ticker-value").textContent = "—";
  runLive(ticker, "clock", "ticker", [n, interval], (tick) => {
    ticks += 1;
    $("ticker-value").textContent = String(tick);
    $("ticker-value").dataset.ticks = String(ticks);
  });
}

const HISTORY = 6;

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
  forgetOldSecret();
  try {
    sigil = await import("./pkg/sigil_wasm.js");
    await sigil.default();
  } catch (err) {
    setState("error", `The sigil module did not load (${err.message}). Build it first: see web/BUILD.md.`);
    return;
  }
  $("new-identity").addEventListener("click", newIdentity);
  $("forget-identity").addEventListener("click", forgetIdentity);
  $("use-text-key").addEventListener("click", () => {
    useTextKey();
    connect();
  });
  $("server-key").addEventListener("input", showServerFingerprint);
  $("connect-form").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", disconnect);
  $("calc-form").addEventListener("submit", onCalc);
  $("echo-form").addEventListener("submit", onEcho);
  $("kv-form").addEventListener("submit", onKv);
  $("ticker-form").addEventListener("submit", toggle(ticker, startTicker));
  $("watch-form").addEventListener("submit", toggle(watcher, startWatch));
  $("clear-trace").addEventListener("click", () => $("trace").replaceChildren());

  me = await loadIdentity();
  showIdentity();
  if (!me) {
    $("fallback").hidden = false;
    $("identity-note").hidden = true;
    $("forget-identity").hidden = true;
    $("new-identity").hidden = true;
  }
  const prefilled = await prefillServerKey();
  setState("idle");
  document.body.dataset.ready = "true";
  // The key came from the server that sent this page: connect at once.
  if (prefilled && me) await connect();
}

main();
