#!/usr/bin/env python3
"""A sigil/1 client in Python, written from book/src/protocol.md alone.

Standard library only (Python 3.11+): X25519 is the RFC 7748 Montgomery
ladder in pure Python, HKDF and HMAC come from hashlib/hmac, and the
WebSocket client (RFC 6455) is written over `socket`. It exists to prove
that the chapter is enough to interoperate with sigil's server; it is a
test tool, not a library (it does not even try to erase secrets).

Usage:

    sigil_client.py --url ws://HOST:PORT/sigil --server-key BASE64
                    --secret-key-file FILE [--psk-file FILE]
                    [--prologue TEXT] [--payload TEXT]
                    [--clock-offset-ms N] [--fragment BYTES]
                    [--hello-hex HEX] [--timeout SECONDS] SCRIPT

    sigil_client.py --check-vectors tests/vectors/sigil1.json

Keys are written as padded standard base64 of their 32 raw bytes (the
secret key unclamped, as the chapter says). --hello-hex sends the given
bytes instead of message 1 and expects a refusal; --fragment splits every
message sent into WebSocket frames of at most that many bytes, with a ping
after the first. SCRIPT is a JSON list of operations, run in order after
the handshake:

    {"op": "call", "object": O, "method": M, "args": [...]}
        send a request and wait for its response; "oneway": true sends it
        with "oneway": true and does not wait; "wait": false does not wait
        (the response is printed when it arrives); "id" overrides the id.
    {"op": "cancel", "id": N}  send {"cancel": N}: the call is no longer
                              in flight (a response to it would print with
                              "expected": false)
    {"op": "stream", "object": O, "method": M, "args": [...], "window": W}
        open a stream with an initial window of W items (default 16) and
        read until it ends; each item is granted back once half a window is
        consumed. "cancel_after": K cancels it after K items; "grant":
        false never grants more credit and stops reading once the window is
        used up (a "silence" op then shows the server sends no more)
    {"op": "wait"}            wait until every call sent is answered
    {"op": "silence", "ms": N}  read for N ms; every frame read is printed
    {"op": "raw", "text": T}  send T (UTF-8) as the payload of a frame;
        "await_id": N then waits for a response with id N
    {"op": "tamper", "field": F, "object": ..., "method": ..., "args": ...}
        seal a request frame, flip the lowest bit of the last byte of field
        F ("type", "seq", "length", "payload" or "tag"; or "bit": K to flip
        bit K of the frame, most significant bit of byte 0 first), send it,
        then wait for the server to close the connection
    {"op": "replay_frame"}    resend the last frame sent, byte for byte, then
                              wait for the server to close the connection
    {"op": "expect_close", "ms": N}  wait for the server to close
    {"op": "ws_ping"}         send a WebSocket ping and wait for the pong
    {"op": "ws_text", "text": T}  send a text WebSocket message, then wait
                              for the server to close the connection
    {"op": "ws_binary", "hex": X}  send X as a binary WebSocket message (not
                              a sealed frame), then wait for the close
    {"op": "replay_hello"}    open a new connection, send this session's
                              message 1 again, and report the answer
    {"op": "close"}           close the connection (WebSocket close 1000)

Output: one JSON object per line on stdout, each with an "event":

    handshake  {"payload": JSON|null, "session_hash": HEX}
    refused    {"code": N, "reason": TEXT}       (the script is not run)
    sent       {"id": N, "oneway": BOOL}
    cancelled  {"id": N}
    response   {"id": N, "result": ...} or {"id": N, "error": {...}},
               with "expected": whether the id was a call in flight
    item       {"id": N, "value": ..., "expected": BOOL}  (a stream's item)
    end        {"id": N, "expected": BOOL}                (a stream's end)
    credit     {"id": N, "n": K}                          (credit granted)
    pong       {}
    tampered   {"id": N, "byte": I, "mask": M}     (the bit flipped)
    replayed_frame {"seq": N}
    unexpected_message {"hex": ...}  (a message read while waiting for a close)
    replay     {"refused": BOOL, "code": N, "reason": TEXT} or
               {"refused": false, "accepted": true}
    closed     {"by": "peer"|"us", "how": "close_frame"|"eof"|"reset"|"timeout",
                "close_code": N|null, "close_reason": TEXT}
    error      {"message": TEXT}                (exit status 1)
    done       {}                               (the script ran to its end)

Exit status: 0 when the script ran (or the handshake was refused), 1 on
any failure (reported as an "error" event), 2 on bad usage.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time
import urllib.parse

# ---------------------------------------------------------------------------
# Primitives (chapter: "Notation and primitives", "Labels")

PROTOCOL_NAME = b"sigil/1 X25519 HKDF-SHA256 HMAC-SHA256"
TRANSPORT_INFO = b"sigil/1 transport"
PAIRWISE_LABEL = b"sigil/1 pairwise"
DEFAULT_PAIRWISE_CONTEXT = b"sigil/1 psk"

MAX_HANDSHAKE_PAYLOAD = 4096
MAX_MESSAGE_SIZE = 1048576
MAX_REASON = 256

TYPE_CLIENT_HELLO = 0x01
TYPE_SERVER_HELLO = 0x02
TYPE_REFUSAL = 0x03
TYPE_FRAME = 0x10
VERSION = 0x01


class ProtocolError(Exception):
    """The peer (or the path) broke the protocol: the connection must end."""


def H(data):
    return hashlib.sha256(data).digest()


def HMAC(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def ct_equal(a, b):
    return hmac.compare_digest(a, b)


def HKDF(salt, ikm, info, length):
    prk = HMAC(salt, ikm)
    t, okm, i = b"", b"", 1
    while len(okm) < length:
        t = HMAC(prk, t + info + bytes([i]))
        okm += t
        i += 1
    return okm[:length]


def HKDF2(ck, ikm):
    okm = HKDF(ck, ikm, b"", 64)
    return okm[:32], okm[32:]


def u16(x):
    return struct.pack(">H", x)


def u32(x):
    return struct.pack(">I", x)


def u64(x):
    return struct.pack(">Q", x)


def read_u16(b):
    return struct.unpack(">H", b)[0]


def read_u32(b):
    return struct.unpack(">I", b)[0]


def read_u64(b):
    return struct.unpack(">Q", b)[0]


# X25519, RFC 7748 section 5: the Montgomery ladder, as written there.
P = 2**255 - 19
A24 = 121665
BASE_POINT = bytes([9]) + bytes(31)


def x25519(k, u):
    if len(k) != 32 or len(u) != 32:
        raise ValueError("X25519 takes 32-byte inputs")
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    scalar = int.from_bytes(k, "little")
    u = bytearray(u)
    u[31] &= 127  # the most significant bit of u is ignored
    x_1 = int.from_bytes(u, "little") % P
    x_2, z_2, x_3, z_3, swap = 1, 0, x_1, 1, 0
    for t in range(254, -1, -1):
        k_t = (scalar >> t) & 1
        swap ^= k_t
        if swap:
            x_2, x_3 = x_3, x_2
            z_2, z_3 = z_3, z_2
        swap = k_t
        A = (x_2 + z_2) % P
        AA = A * A % P
        B = (x_2 - z_2) % P
        BB = B * B % P
        E = (AA - BB) % P
        C = (x_3 + z_3) % P
        D = (x_3 - z_3) % P
        DA = D * A % P
        CB = C * B % P
        x_3 = (DA + CB) * (DA + CB) % P
        z_3 = x_1 * (DA - CB) * (DA - CB) % P
        x_2 = AA * BB % P
        z_2 = E * (AA + A24 * E) % P
    if swap:
        x_2, x_3 = x_3, x_2
        z_2, z_3 = z_3, z_2
    return (x_2 * pow(z_2, P - 2, P) % P).to_bytes(32, "little")


def DH(sk, pk):
    """X25519 with the chapter's all-zero abort."""
    out = x25519(sk, pk)
    if out == bytes(32):
        raise ProtocolError("X25519 gave the all-zero result (low-order public key)")
    return out


def public_key(sk):
    return x25519(sk, BASE_POINT)


def pairwise_key(a_sk, b_pub, context=DEFAULT_PAIRWISE_CONTEXT):
    """Chapter: "Pairwise keys offline" (only used by --check-vectors)."""
    a_pub = public_key(a_sk)
    lo, hi = min(a_pub, b_pub), max(a_pub, b_pub)  # bytes compare byte-wise
    salt = H(PAIRWISE_LABEL + lo + hi)
    return HKDF(salt, DH(a_sk, b_pub), context, 32)


def is_one_json_value(data):
    """One complete RFC 8259 JSON text, in UTF-8 (chapter: server step 10)."""
    try:
        text = data.decode("utf-8")
        json.loads(text, parse_constant=_reject_constant)
        return True
    except (UnicodeDecodeError, ValueError):
        return False


def _reject_constant(name):
    raise ValueError("not JSON: " + name)


# ---------------------------------------------------------------------------
# Handshake (chapter: "Handshake state", "Message 1", "Client: checking
# message 2", "Transport keys and session hash", "Refusal")


class Refused(Exception):
    def __init__(self, code, reason):
        super().__init__("refused with code %d: %s" % (code, reason))
        self.code = code
        self.reason = reason


class Session:
    """Transport frames (chapter: "Transport frames")."""

    def __init__(self, k_c2s, k_s2c, session_hash, max_message_size=MAX_MESSAGE_SIZE):
        self.k_out = k_c2s
        self.k_in = k_s2c
        self.session_hash = session_hash
        self.max_message_size = max_message_size
        self.seq_out = 0
        self.seq_in = 0

    def seal(self, payload):
        if self.seq_out > 2**64 - 1:
            raise ProtocolError("sequence numbers exhausted")
        frame = bytes([TYPE_FRAME]) + u64(self.seq_out) + u32(len(payload)) + payload
        frame += HMAC(self.k_out, frame)
        self.seq_out += 1
        return frame

    def open(self, frame):
        if len(frame) < 45 or frame[0] != TYPE_FRAME:
            raise ProtocolError("not a transport frame")
        n = read_u32(frame[9:13])
        if n > self.max_message_size:
            raise ProtocolError("frame payload larger than max_message_size")
        if len(frame) != 45 + n:
            raise ProtocolError("frame length does not match its n")
        if not ct_equal(HMAC(self.k_in, frame[: 13 + n]), frame[13 + n : 45 + n]):
            raise ProtocolError("bad frame tag")
        if self.seq_in > 2**64 - 1 or read_u64(frame[1:9]) != self.seq_in:
            raise ProtocolError("unexpected frame sequence number")
        self.seq_in += 1
        return frame[13 : 13 + n]


class ClientHandshake:
    def __init__(self, server_public, client_secret, prologue=b"", psk=None,
                 max_handshake_payload=MAX_HANDSHAKE_PAYLOAD):
        if psk is not None and len(psk) != 32:
            raise ValueError("a psk is exactly 32 bytes")
        self.S = server_public
        self.c_sk = client_secret
        self.C = public_key(client_secret)
        self.max_handshake_payload = max_handshake_payload
        # Initialisation
        h = H(PROTOCOL_NAME)
        ck = h
        h = H(h + prologue)
        h = H(h + self.S)
        if psk is not None:
            ck, _ = HKDF2(ck, psk)
        self.h, self.ck = h, ck
        self.ec_sk = None

    def message1(self, ec_sk, timestamp_ms, payload):
        if len(payload) > self.max_handshake_payload:
            raise ValueError("handshake payload larger than max_handshake_payload")
        self.ec_sk = ec_sk
        EC = public_key(ec_sk)
        body1 = (bytes([TYPE_CLIENT_HELLO, VERSION]) + EC + self.C + u64(timestamp_ms)
                 + u32(len(payload)) + payload)
        self.h = H(self.h + body1)
        self.ck, _ = HKDF2(self.ck, DH(ec_sk, self.S))  # es
        self.ck, k1 = HKDF2(self.ck, DH(self.c_sk, self.S))  # ss
        tag1 = HMAC(k1, self.h)
        self.h = H(self.h + tag1)
        return body1 + tag1

    def read_answer(self, m):
        """Returns (Session, payload bytes); raises Refused or ProtocolError."""
        # 1. a refusal
        if len(m) >= 1 and m[0] == TYPE_REFUSAL:
            if len(m) < 8:
                raise ProtocolError("broken refusal (shorter than 8 bytes)")
            n = read_u32(m[4:8])
            if n > MAX_REASON or len(m) != 8 + n:
                raise ProtocolError("broken refusal (bad reason length)")
            raise Refused(read_u16(m[2:4]), m[8:].decode("utf-8", errors="replace"))
        # 2. type and version
        if len(m) < 2 or m[0] != TYPE_SERVER_HELLO or m[1] != VERSION:
            raise ProtocolError("the answer is neither message 2 (sigil/1) nor a refusal")
        # 3. fixed part
        if len(m) < 70:
            raise ProtocolError("message 2 is shorter than 70 bytes")
        # 4. payload length
        n = read_u32(m[34:38])
        if n > self.max_handshake_payload or len(m) != 70 + n:
            raise ProtocolError("message 2 has a bad payload length")
        # 5. key schedule
        ES = m[2:34]
        self.h = H(self.h + m[: 38 + n])
        self.ck, _ = HKDF2(self.ck, DH(self.ec_sk, ES))  # ee
        self.ck, k2 = HKDF2(self.ck, DH(self.c_sk, ES))  # se
        if not ct_equal(HMAC(k2, self.h), m[38 + n : 70 + n]):
            raise ProtocolError("bad tag2: the server is not the pinned one, or psk/prologue differ")
        self.h = H(self.h + m[38 + n : 70 + n])
        # 6. payload
        payload = m[38 : 38 + n]
        if n > 0 and not is_one_json_value(payload):
            raise ProtocolError("message 2 payload is not one JSON value")
        okm = HKDF(self.ck, b"", TRANSPORT_INFO, 64)
        session = Session(okm[:32], okm[32:], self.h)
        self.ck = self.h = self.ec_sk = None
        return session, payload


# ---------------------------------------------------------------------------
# WebSocket client (RFC 6455), just what sigil needs

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "sigil.v1"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Closed(Exception):
    """The connection ended; `info` says how (for the "closed" event)."""

    def __init__(self, how, close_code=None, close_reason=""):
        super().__init__("connection closed (%s)" % how)
        self.how = how
        self.close_code = close_code
        self.close_reason = close_reason


class WsTimeout(Exception):
    pass


class WebSocket:
    def __init__(self, url, timeout):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws":
            raise ValueError("only ws:// URLs are supported (got %r)" % url)
        host = parts.hostname
        port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.close_sent = False
        self.closed = None  # a Closed once the connection has ended
        self.partial = None  # a fragmented binary message being reassembled
        self.fragment = 0  # if set, send messages in frames of at most this
        self.max_message = MAX_MESSAGE_SIZE + 45
        self._upgrade(parts.netloc, path, time.monotonic() + timeout)

    # -- HTTP upgrade
    def _upgrade(self, netloc, path, deadline):
        key = base64.b64encode(os.urandom(16))
        request = (
            "GET %s HTTP/1.1\r\n"
            "Host: %s\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: %s\r\n"
            "\r\n" % (path, netloc, key.decode("ascii"), SUBPROTOCOL)
        )
        self.sock.sendall(request.encode("ascii"))
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ProtocolError("HTTP upgrade response too long")
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "101":
            raise ProtocolError("the server refused the WebSocket upgrade: %s" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError("bad HTTP header line %r" % line)
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        if headers.get("upgrade", "").lower() != "websocket":
            raise ProtocolError("101 without Upgrade: websocket")
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            raise ProtocolError("101 without Connection: Upgrade")
        expected = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode("ascii")
        if headers.get("sec-websocket-accept") != expected:
            raise ProtocolError("wrong Sec-WebSocket-Accept")
        if headers.get("sec-websocket-protocol") != SUBPROTOCOL:
            raise ProtocolError("the server did not select the subprotocol %s (got %r)"
                                % (SUBPROTOCOL, headers.get("sec-websocket-protocol")))
        if "sec-websocket-extensions" in headers:
            raise ProtocolError("the server selected an extension we did not offer")

    # -- bytes
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WsTimeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise WsTimeout() from None
        except (ConnectionResetError, BrokenPipeError):
            raise self._ended(Closed("reset")) from None
        if not data:
            raise self._ended(Closed("eof"))
        self.buf += data

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _ended(self, closed):
        self.closed = closed
        try:
            self.sock.close()
        except OSError:
            pass
        return closed

    # -- frames
    def _send_frame(self, opcode, payload, fin=True):
        if self.closed is not None:
            raise self.closed
        header = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        if n:
            repeated = (mask * (n // 4 + 1))[:n]
            masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
        else:
            masked = b""
        try:
            self.sock.sendall(header + mask + masked)
        except (ConnectionResetError, BrokenPipeError):
            raise self._ended(Closed("reset")) from None

    def send_binary(self, data):
        if not self.fragment or len(data) <= self.fragment:
            self._send_frame(OP_BINARY, data)
            return
        # One message in several frames, with a ping between the first two
        # (RFC 6455 allows control frames in the middle of a message).
        pieces = [data[i : i + self.fragment] for i in range(0, len(data), self.fragment)]
        for i, piece in enumerate(pieces):
            self._send_frame(OP_BINARY if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
            if i == 0:
                self._send_frame(OP_PING, b"mid-message")

    def send_text(self, data):
        self._send_frame(OP_TEXT, data)

    def send_ping(self, data):
        self._send_frame(OP_PING, data)

    def send_close(self, code=1000, reason=b""):
        if self.close_sent or self.closed is not None:
            return
        self.close_sent = True
        self._send_frame(OP_CLOSE, u16(code) + reason)

    def _read_frame(self, deadline):
        b0, b1 = self._take(2, deadline)
        fin, rsv, opcode = b0 & 0x80, b0 & 0x70, b0 & 0x0F
        if rsv:
            raise ProtocolError("WebSocket frame with RSV bits set")
        if b1 & 0x80:
            raise ProtocolError("the server sent a masked WebSocket frame")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._take(8, deadline))[0]
        if opcode >= 0x8 and (n > 125 or not fin):
            raise ProtocolError("bad WebSocket control frame")
        if n > self.max_message:
            raise ProtocolError("WebSocket frame larger than the largest protocol message")
        return bool(fin), opcode, self._take(n, deadline)

    def recv(self, deadline, on_pong=None):
        """The next binary message; raises Closed, WsTimeout, ProtocolError.
        With `on_pong`, a pong is passed to it and None is returned."""
        if self.closed is not None:
            raise self.closed
        while True:
            message = self.partial
            fin, opcode, data = self._read_frame(deadline)
            if opcode == OP_PING:
                self._send_frame(OP_PONG, data)
            elif opcode == OP_PONG:
                if on_pong is not None:
                    on_pong(data)
                    return None
            elif opcode == OP_CLOSE:
                code = read_u16(data[:2]) if len(data) >= 2 else None
                reason = data[2:].decode("utf-8", errors="replace")
                if not self.close_sent:
                    try:
                        self.send_close(code if code is not None else 1000)
                    except Closed:
                        pass
                raise self._ended(Closed("close_frame", code, reason))
            elif opcode == OP_TEXT:
                raise ProtocolError("a text WebSocket message (sigil/1 only uses binary messages)")
            elif opcode == OP_BINARY:
                if message is not None:
                    raise ProtocolError("a new WebSocket message inside a fragmented one")
                message = data
            elif opcode == OP_CONT:
                if message is None:
                    raise ProtocolError("a WebSocket continuation frame with nothing to continue")
                message += data
            else:
                raise ProtocolError("unknown WebSocket opcode %d" % opcode)
            if message is not None and len(message) > self.max_message:
                raise ProtocolError("WebSocket message larger than the largest protocol message")
            if opcode in (OP_BINARY, OP_CONT):
                if fin:
                    self.partial = None
                    return message
                self.partial = message

    def wait_closed(self, deadline):
        """Reads until the peer closes; returns the Closed. Messages read
        meanwhile are returned in a list with it."""
        messages = []
        while True:
            try:
                messages.append(self.recv(deadline))
            except Closed as closed:
                return closed, messages

    def close(self, deadline):
        """Our clean close: send a close, wait for the peer's close or EOF."""
        if self.closed is not None:
            return self.closed
        try:
            self.send_close(1000)
            while True:
                self.recv(deadline)
        except Closed as closed:
            return closed
        except (WsTimeout, ProtocolError):
            return self._ended(Closed("timeout"))

    def abort(self, code=1002):
        if self.closed is None:
            try:
                self.send_close(code)
            except (Closed, OSError):
                pass
            self._ended(Closed("aborted"))


# ---------------------------------------------------------------------------
# The command-line client


def emit(event, **fields):
    out = {"event": event}
    out.update(fields)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def closed_event(closed, by):
    emit("closed", by=by, how=closed.how, close_code=closed.close_code,
         close_reason=closed.close_reason)


class Failure(Exception):
    pass


def read_key(text, what):
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise SystemExit("%s is not base64" % what)
    if len(raw) != 32:
        raise SystemExit("%s is not 32 bytes" % what)
    return raw


def parse_response(payload):
    """Chapter: "Response" and "Streams": a response, a stream's item or its
    end. Returns the parsed object; raises ProtocolError."""
    try:
        value = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("a frame payload that is not JSON: %r" % payload[:200]) from None
    shapes = ({"id", "result"}, {"id", "error"}, {"id", "item"}, {"id", "end"})
    if not isinstance(value, dict) or set(value) not in shapes:
        raise ProtocolError("not a response: %r" % payload[:200])
    if "end" in value and value["end"] is not True:
        raise ProtocolError("a stream's end that is not true: %r" % payload[:200])
    rid = value["id"]
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= 2**64 - 1:
        raise ProtocolError("a response with a bad id: %r" % payload[:200])
    if "error" in value:
        err = value["error"]
        if (not isinstance(err, dict) or not isinstance(err.get("code"), str)
                or not isinstance(err.get("message"), str)):
            raise ProtocolError("a response with a bad error: %r" % payload[:200])
    return value


class Client:
    def __init__(self, args):
        self.args = args
        self.timeout = args.timeout
        self.ws = None
        self.session = None
        self.msg1 = None
        self.next_id = 1
        self.in_flight = set()
        self.answered = {}
        self.last_frame = None
        self.pongs = []
        # Open streams by id: {"window", "outstanding", "to_grant", "grant", "items"}.
        self.streams = {}

    def deadline(self, seconds=None):
        return time.monotonic() + (self.timeout if seconds is None else seconds)

    # -- connection and handshake
    def handshake(self):
        a = self.args
        hs = ClientHandshake(a.server_key, a.secret_key, a.prologue, a.psk)
        payload = a.payload.encode("utf-8") if a.payload is not None else b""
        timestamp = int(time.time() * 1000) + a.clock_offset_ms
        self.msg1 = hs.message1(os.urandom(32), timestamp, payload)
        if a.hello_hex is not None:
            self.msg1 = bytes.fromhex(a.hello_hex)  # a broken hello, to be refused
        self.ws = WebSocket(a.url, self.timeout)
        self.ws.fragment = a.fragment
        self.ws.max_message = 70 + MAX_HANDSHAKE_PAYLOAD
        self.ws.send_binary(self.msg1)
        try:
            answer = self.ws.recv(self.deadline())
        except WsTimeout:
            raise Failure("no answer to message 1 within %ss" % self.timeout) from None
        if a.hello_hex is not None and (not answer or answer[0] != TYPE_REFUSAL):
            raise Failure("the server did not refuse the message sent as message 1")
        try:
            self.session, server_payload = hs.read_answer(answer)
        except Refused as refused:
            emit("refused", code=refused.code, reason=refused.reason)
            closed, messages = self.ws.wait_closed(self.deadline())
            if messages:
                raise Failure("the server sent %d message(s) after its refusal" % len(messages))
            closed_event(closed, "peer")
            return False
        self.ws.max_message = 45 + MAX_MESSAGE_SIZE
        emit("handshake",
             payload=json.loads(server_payload.decode("utf-8")) if server_payload else None,
             session_hash=self.session.session_hash.hex())
        return True

    # -- frames
    def send_payload(self, payload):
        frame = self.session.seal(payload)
        self.last_frame = frame
        self.ws.send_binary(frame)

    def receive_one(self, deadline):
        """Reads one frame and handles it; returns the response (or None for
        an empty frame). Raises WsTimeout or Closed."""
        frame = self.ws.recv(deadline, on_pong=self.pongs.append)
        if frame is None:
            return None  # a pong
        payload = self.session.open(frame)
        if not payload:
            return None  # an empty frame carries no RPC message
        response = parse_response(payload)
        rid = response["id"]
        stream = self.streams.get(rid)
        if "item" in response:
            if stream is None:
                emit("item", id=rid, value=response["item"], expected=False)
                return response
            if stream["outstanding"] == 0:
                raise ProtocolError("stream %d sent more items than its credit" % rid)
            stream["outstanding"] -= 1
            stream["items"] += 1
            emit("item", id=rid, value=response["item"], expected=True)
            self.consumed(rid, stream)
            return response
        if "end" in response:
            emit("end", id=rid, expected=self.streams.pop(rid, None) is not None)
            return response
        # A response; for a stream, an error that ends it.
        expected = rid in self.in_flight or self.streams.pop(rid, None) is not None
        self.in_flight.discard(rid)
        self.answered[rid] = response
        emit("response", expected=expected, **response)
        return response

    def consumed(self, rid, stream):
        """Chapter "Streams": grant credit back once half a window is taken."""
        if not stream["grant"]:
            return
        stream["to_grant"] += 1
        if stream["to_grant"] >= max(1, stream["window"] // 2):
            n, stream["to_grant"] = stream["to_grant"], 0
            stream["outstanding"] += n
            self.send_payload(json.dumps({"credit": rid, "n": n}, separators=(",", ":")).encode())
            emit("credit", id=rid, n=n)

    def wait_for(self, rid, what):
        deadline = self.deadline()
        while rid not in self.answered:
            try:
                self.receive_one(deadline)
            except WsTimeout:
                raise Failure("no response to %s within %ss" % (what, self.timeout)) from None

    def request(self, op, rid):
        req = {"id": rid, "object": op["object"], "method": op["method"], "args": op.get("args", [])}
        if "oneway" in op:
            req["oneway"] = op["oneway"]
        return json.dumps(req, separators=(",", ":")).encode("utf-8")

    def take_id(self, op):
        if "id" in op:
            return op["id"]
        rid = self.next_id
        self.next_id += 1
        return rid

    # -- operations
    def op_call(self, op):
        rid = self.take_id(op)
        oneway = bool(op.get("oneway", False))
        self.answered.pop(rid, None)
        if not oneway:
            self.in_flight.add(rid)
        self.send_payload(self.request(op, rid))
        emit("sent", id=rid, oneway=oneway)
        if not oneway and op.get("wait", True):
            self.wait_for(rid, "call %d" % rid)

    def op_wait(self, op):
        deadline = self.deadline()
        while self.in_flight:
            try:
                self.receive_one(deadline)
            except WsTimeout:
                raise Failure("calls %s unanswered after %ss"
                              % (sorted(self.in_flight), self.timeout)) from None

    def op_silence(self, op):
        deadline = self.deadline(op.get("ms", 500) / 1000)
        try:
            while True:
                self.receive_one(deadline)
        except WsTimeout:
            pass

    def op_stream(self, op):
        rid = self.take_id(op)
        window = op.get("window", 16)
        request = json.loads(self.request(op, rid))
        request["stream"] = window
        stream = {"window": window, "outstanding": window, "to_grant": 0,
                  "grant": op.get("grant", True), "items": 0}
        self.streams[rid] = stream
        self.send_payload(json.dumps(request, separators=(",", ":")).encode("utf-8"))
        emit("sent", id=rid, oneway=False, stream=window)
        cancel_after = op.get("cancel_after")
        deadline = self.deadline()
        while rid in self.streams:
            if cancel_after is not None and stream["items"] >= cancel_after:
                self.op_cancel({"id": rid})
                return
            if not stream["grant"] and stream["outstanding"] == 0:
                return
            try:
                self.receive_one(deadline)
            except WsTimeout:
                raise Failure("stream %d did not end within %ss" % (rid, self.timeout)) from None

    def op_cancel(self, op):
        # Chapter "Server processing": {"cancel": ID} stops call ID; the
        # server then sends nothing for it, now or later.
        rid = op["id"]
        self.in_flight.discard(rid)
        self.streams.pop(rid, None)
        self.send_payload(json.dumps({"cancel": rid}, separators=(",", ":")).encode("utf-8"))
        emit("cancelled", id=rid)

    def op_raw(self, op):
        self.send_payload(op["text"].encode("utf-8"))
        emit("sent", id=None, oneway=False)
        if "await_id" in op:
            rid = op["await_id"]
            self.answered.pop(rid, None)
            self.wait_for(rid, "the raw frame (awaiting id %d)" % rid)

    def expect_close(self, ms):
        closed, messages = self.ws.wait_closed(self.deadline(ms / 1000))
        for m in messages:
            emit("unexpected_message", hex=m[:256].hex())
        closed_event(closed, "peer")

    def _expect_close(self, op):
        try:
            self.expect_close(op.get("ms", self.timeout * 1000))
        except WsTimeout:
            raise Failure("the server did not close the connection") from None

    def op_tamper(self, op):
        rid = self.take_id(op)
        frame = bytearray(self.session.seal(self.request(op, rid)))
        n = read_u32(bytes(frame[9:13]))
        if "bit" in op:
            bit = op["bit"]
            index, mask = bit // 8, 0x80 >> (bit % 8)
        else:
            last = {"type": 0, "seq": 8, "length": 12, "payload": 12 + n, "tag": 44 + n}
            index, mask = last[op.get("field", "payload")], 0x01
        frame[index] ^= mask
        emit("tampered", id=rid, byte=index, mask=mask)
        self.ws.send_binary(bytes(frame))
        self._expect_close(op)

    def op_replay_frame(self, op):
        if self.last_frame is None:
            raise Failure("replay_frame: no frame sent yet")
        self.ws.send_binary(self.last_frame)
        emit("replayed_frame", seq=read_u64(self.last_frame[1:9]))
        self._expect_close(op)

    def op_expect_close(self, op):
        self._expect_close(op)

    def op_ws_ping(self, op):
        data = os.urandom(8)
        self.pongs.clear()
        self.ws.send_ping(data)
        deadline = self.deadline()
        while data not in self.pongs:
            try:
                self.receive_one(deadline)
            except WsTimeout:
                raise Failure("no pong to our ping") from None
        emit("pong")

    def op_replay_hello(self, op):
        ws = WebSocket(self.args.url, self.timeout)
        try:
            ws.max_message = 70 + MAX_HANDSHAKE_PAYLOAD
            ws.send_binary(self.msg1)
            try:
                answer = ws.recv(self.deadline())
            except WsTimeout:
                raise Failure("no answer to the replayed message 1") from None
            if len(answer) >= 8 and answer[0] == TYPE_REFUSAL:
                n = read_u32(answer[4:8])
                if n > MAX_REASON or len(answer) != 8 + n:
                    raise Failure("broken refusal")
                emit("replay", refused=True, code=read_u16(answer[2:4]),
                     reason=answer[8:].decode("utf-8", errors="replace"))
            elif len(answer) >= 2 and answer[0] == TYPE_SERVER_HELLO:
                # Without ec_sk nobody (not even we, the key is gone) can
                # complete this session, but the server accepted the hello.
                emit("replay", refused=False, accepted=True)
            else:
                raise Failure("unexpected answer to the replayed message 1")
        finally:
            ws.close(self.deadline(2))

    def op_ws_text(self, op):
        self.ws.send_text(op["text"].encode("utf-8"))
        self._expect_close(op)

    def op_ws_binary(self, op):
        self.ws.send_binary(bytes.fromhex(op["hex"]))
        self._expect_close(op)

    def op_close(self, op):
        closed_event(self.ws.close(self.deadline()), "us")

    def run(self, script):
        if not self.handshake():
            return
        for op in script:
            name = op.get("op")
            method = getattr(self, "op_" + str(name), None)
            if method is None:
                raise Failure("unknown op %r" % name)
            method(op)
        if self.ws.closed is None:
            self.ws.close(self.deadline(2))
        emit("done")


# ---------------------------------------------------------------------------
# --check-vectors: this client's key schedule against tests/vectors/sigil1.json


def check_vectors(path):
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    failures = 0

    def check(name, got, want):
        nonlocal failures
        if got != want:
            failures += 1
            emit("mismatch", case=name, got=got, want=want)

    for case in vectors["handshakes"]:
        name = case["name"]
        x = bytes.fromhex
        S = x(case["server_static_public_hex"])
        check(name + ": S", public_key(x(case["server_static_secret_hex"])).hex(), S.hex())
        check(name + ": C", public_key(x(case["client_static_secret_hex"])).hex(),
              case["client_static_public_hex"])
        psk = x(case["psk_hex"]) if case["psk_hex"] is not None else None
        hs = ClientHandshake(S, x(case["client_static_secret_hex"]), x(case["prologue_hex"]), psk)
        msg1 = hs.message1(x(case["client_ephemeral_secret_hex"]), case["timestamp_ms"],
                           case["client_payload"].encode("utf-8"))
        check(name + ": msg1", msg1.hex(), case["msg1_hex"])
        session, payload = hs.read_answer(x(case["msg2_hex"]))
        check(name + ": server payload", payload.decode("utf-8"), case["server_payload"])
        check(name + ": session_hash", session.session_hash.hex(), case["session_hash_hex"])
        check(name + ": k_c2s", session.k_out.hex(), case["k_c2s_hex"])
        check(name + ": k_s2c", session.k_in.hex(), case["k_s2c_hex"])
        for frame in case["frames"]:
            label = "%s: %s frame seq %d" % (name, frame["direction"], frame["seq"])
            if frame["direction"] == "c2s":
                session.seq_out = frame["seq"]
                check(label, session.seal(frame["payload"].encode("utf-8")).hex(), frame["frame_hex"])
            else:
                session.seq_in = frame["seq"]
                check(label, session.open(x(frame["frame_hex"])).decode("utf-8"), frame["payload"])
    for case in vectors["pairwise"]:
        b = base64.b64decode
        context = case["context"].encode("utf-8") if case["context"] is not None else DEFAULT_PAIRWISE_CONTEXT
        a_sk, b_sk = b(case["alice_secret_b64"]), b(case["bob_secret_b64"])
        a_pub, b_pub = b(case["alice_public_b64"]), b(case["bob_public_b64"])
        check(case["name"] + ": alice public", public_key(a_sk).hex(), a_pub.hex())
        check(case["name"] + ": bob public", public_key(b_sk).hex(), b_pub.hex())
        want = case["key_b64"]
        check(case["name"] + ": alice", base64.b64encode(pairwise_key(a_sk, b_pub, context)).decode(), want)
        check(case["name"] + ": bob", base64.b64encode(pairwise_key(b_sk, a_pub, context)).decode(), want)
    emit("vectors", handshakes=len(vectors["handshakes"]), pairwise=len(vectors["pairwise"]),
         failures=failures)
    return failures == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="sigil/1 client (Python, standard library only)")
    parser.add_argument("--url", help="ws://HOST:PORT/sigil")
    parser.add_argument("--server-key", help="the server's public key (base64)")
    parser.add_argument("--secret-key-file", help="file with the client's secret key (base64)")
    parser.add_argument("--psk-file", help="file with the pre-shared key (base64 of 32 bytes)")
    parser.add_argument("--prologue", default="", help="prologue text (UTF-8); default empty")
    parser.add_argument("--payload", help="handshake payload text, sent as is (default: none)")
    parser.add_argument("--clock-offset-ms", type=int, default=0,
                        help="added to our clock for the hello's timestamp")
    parser.add_argument("--fragment", type=int, default=0, metavar="BYTES",
                        help="send each message in WebSocket frames of at most BYTES")
    parser.add_argument("--hello-hex", metavar="HEX",
                        help="send these bytes instead of message 1 (expects a refusal)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per wait")
    parser.add_argument("--check-vectors", metavar="FILE",
                        help="check the key schedule against a sigil1.json and exit")
    parser.add_argument("script", nargs="?", default="[]", help="JSON list of operations")
    a = parser.parse_args(argv)

    if a.check_vectors:
        return 0 if check_vectors(a.check_vectors) else 1

    if not (a.url and a.server_key and a.secret_key_file):
        parser.error("--url, --server-key and --secret-key-file are required")
    a.server_key = read_key(a.server_key, "--server-key")
    with open(a.secret_key_file, encoding="utf-8") as f:
        a.secret_key = read_key(f.read(), "the secret key file")
    a.psk = None
    if a.psk_file:
        with open(a.psk_file, encoding="utf-8") as f:
            a.psk = read_key(f.read(), "the psk file")
    a.prologue = a.prologue.encode("utf-8")
    try:
        script = json.loads(a.script)
    except ValueError as e:
        parser.error("SCRIPT is not JSON: %s" % e)
    if not isinstance(script, list) or not all(isinstance(op, dict) for op in script):
        parser.error("SCRIPT must be a JSON list of objects")

    client = Client(a)
    try:
        client.run(script)
        return 0
    except Closed as closed:
        closed_event(closed, "peer")
        emit("error", message="the connection ended unexpectedly (%s)" % closed.how)
    except (Failure, ProtocolError, WsTimeout, OSError, ValueError) as e:
        emit("error", message="%s: %s" % (type(e).__name__, e or "timed out"))
    if client.ws is not None:
        client.ws.abort()
    return 1


if __name__ == "__main__":
    sys.exit(main())
