// What the end-to-end test (tests/e2e.mjs) and the browser benchmark
// (bench/run.mjs) share: starting `sigil serve --demo`, a static server over
// web/ with the sigil server's headers, and Debian's Chromium.

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { connect, createServer as netServer } from "node:net";
import { createHash } from "node:crypto";
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(WEB, "..");

/** The sigil server's Content-Security-Policy (crates/sigil-server/src/server.rs). */
export const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' ws: wss:; " +
  "img-src 'self' data:; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CHROME_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Headless Chromium (Debian's, or $CHROMIUM). */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: CHROME_FLAGS,
  });
}

/** The sigil binary the tests start: $SIGIL_BIN, or the debug build. */
export const SIGIL_BIN = process.env.SIGIL_BIN ?? path.join(ROOT, "target", "debug", "sigil");

/** A fresh temporary folder. */
export function tempDir() {
  return mkdtemp(path.join(tmpdir(), "sigil-web-"));
}

/**
 * Starts `BIN serve --demo --no-env --port PORT` (0: any free port; with
 * `config`, a TOML text, if given) and reads its url and public key:
 * `{ child, url, key, port, stop({ kill }), logs() }` (logs: its stderr so far).
 */
export async function startSigil({ bin = SIGIL_BIN, config, port = 0 } = {}) {
  const args = ["serve", "--demo", "--no-env", "--host", "127.0.0.1", "--port", String(port)];
  if (config) {
    const dir = await tempDir();
    const file = path.join(dir, "sigil.toml");
    await writeFile(file, config);
    args.push("--config", file);
  }
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  // SIGTERM lets the server wait for its connections to close; `kill`
  // (SIGKILL) ends it at once, as a crash would.
  const stop = ({ kill = false } = {}) =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", resolve);
      child.kill(kill ? "SIGKILL" : "SIGTERM");
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`sigil serve printed no url within 20 s\nstdout: ${out}\nstderr: ${err}`));
    }, 20_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${e.message} (build it: cargo build -p sigil-cli)`));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sigil serve exited (${code})\nstdout: ${out}\nstderr: ${err}`));
    });
    child.stdout.on("data", (d) => {
      out += d;
      const url = /^url: (\S+)$/m.exec(out);
      const key = /^public key: (\S+)$/m.exec(out);
      if (url && key) {
        clearTimeout(timer);
        child.removeAllListeners("exit");
        const logs = () => err;
        resolve({ child, url: url[1], key: key[1], port: Number(new URL(url[1]).port), stop, logs });
      }
    });
  });
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".ts": "text/plain; charset=utf-8",
};

/**
 * A static server over web/ on a free loopback port, with the sigil server's
 * headers (no-store, the strict CSP) and its /server-key answer.
 */
export function startStaticServer(key) {
  const srv = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    const headers = {
      "Cache-Control": "no-store",
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
    };
    if (url.pathname === "/server-key") {
      res.writeHead(200, { ...headers, "Content-Type": "application/json" });
      res.end(JSON.stringify({ public_key: key }));
      return;
    }
    const rel = url.pathname.endsWith("/") ? `${url.pathname.slice(1)}index.html` : url.pathname.slice(1);
    const file = path.resolve(WEB, rel);
    const type = TYPES[path.extname(file)];
    if (!file.startsWith(WEB + path.sep) || file.includes("node_modules") || !type) {
      res.writeHead(404).end("not found\n");
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { ...headers, "Content-Type": type });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found\n");
    }
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

/**
 * The WebSocket frame from a client (masked) at the start of `buf`, if it
 * is all there: its opcode, where its payload starts (after the mask) and
 * its length.
 */
function clientFrame(buf) {
  if (buf.length < 2) return null;
  let len = buf[1] & 127;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  at += 4;
  return buf.length < at + len ? null : { opcode: buf[0] & 15, at, len };
}

/**
 * A WebSocket echo server on a free loopback port (binary messages come
 * back as they are): the browser benchmark's reference for what a bare
 * WebSocket does on this machine, with no sigil code on either side.
 */
export function startEchoServer() {
  const srv = createServer((req, res) => res.writeHead(404).end());
  srv.on("upgrade", (req, socket) => {
    const accept = createHash("sha1")
      .update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
      .digest("base64");
    socket.setNoDelay(true);
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    let buf = Buffer.alloc(0);
    socket.on("error", () => socket.destroy());
    socket.on("data", (data) => {
      buf = Buffer.concat([buf, data]);
      const out = [];
      for (let f; (f = clientFrame(buf)); ) {
        const { opcode, at, len } = f;
        const mask = buf.subarray(at - 4, at);
        const payload = Buffer.from(buf.subarray(at, at + len));
        for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
        buf = buf.subarray(at + len);
        if (opcode === 8) {
          socket.end();
          return;
        }
        if (opcode !== 2) continue;
        out.push(len < 126 ? Buffer.from([0x82, len]) : Buffer.from([0x82, 126, len >> 8, len & 255]), payload);
      }
      if (out.length) socket.write(Buffer.concat(out));
    });
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

/**
 * A TCP proxy on a free loopback port to the sigil server on `port`, for
 * tests of what the browser puts on the wire: it rewrites the upgrade
 * request's Host (to the server's) and, with `offer`, its
 * Sec-WebSocket-Protocol header (to that value), then passes bytes both
 * ways, counting the client's binary WebSocket messages in `proxy.sent`.
 */
export function startProxy(port, { offer } = {}) {
  const proxy = netServer((client) => {
    const upstream = connect(port, "127.0.0.1");
    let head = Buffer.alloc(0);
    let frames = null; // after the request head: the client's WebSocket bytes
    client.on("data", (data) => {
      if (frames === null) {
        head = Buffer.concat([head, data]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        let text = head.subarray(0, end + 4).toString("latin1");
        text = text.replace(/^Host: .*$/im, `Host: 127.0.0.1:${port}`);
        if (offer) text = text.replace(/^Sec-WebSocket-Protocol: .*$/im, `Sec-WebSocket-Protocol: ${offer}`);
        upstream.write(text);
        frames = Buffer.alloc(0);
        data = head.subarray(end + 4);
      }
      upstream.write(data);
      frames = Buffer.concat([frames, data]);
      for (let f; (f = clientFrame(frames)); frames = frames.subarray(f.at + f.len)) {
        if (f.opcode === 2) proxy.sent += 1;
      }
    });
    upstream.on("data", (data) => client.write(data));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  });
  proxy.sent = 0;
  return new Promise((resolve) => proxy.listen(0, "127.0.0.1", () => resolve(proxy)));
}
