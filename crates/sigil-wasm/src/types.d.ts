
/** A key pair as base64 text (the same text as `wg genkey` / `wg pubkey` and the `sigil` command). */
export interface KeyPair {
  /** The secret key: keep it secret. */
  secretKey: string;
  /** The public key: give it to servers that should accept this client. */
  publicKey: string;
}

/**
 * The options of `Client.connect`. Give exactly one of `identity` (a key no script can read:
 * the choice for pages) and `secretKey` (a text key: for programs that are provisioned one).
 */
export type ConnectOptions = CommonConnectOptions &
  ({ identity: Identity | IdentityKeys; secretKey?: undefined } | { secretKey: string; identity?: undefined });

/** A key pair made with WebCrypto by the page itself: what `Identity` holds. */
export interface IdentityKeys {
  /** An X25519 private key (non-extractable, usage `deriveBits`). */
  privateKey: CryptoKey;
  /** Its public key, base64. */
  publicKey: string;
}

/** Reconnecting after a break: `maxAttempts` (default 10), waiting `initialDelayMs` (default 250) doubled each attempt up to `maxDelayMs` (default 10000), half of it random. */
export interface ReconnectOptions {
  maxAttempts?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** Where a client is: connecting (a socket and handshake under way), open, reconnecting (waiting for the next attempt), closed (for good). */
export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

/** A state change, as `onState` gets it. */
export interface StateChange {
  state: ClientState;
  /** connecting, reconnecting: the attempt (0 for the first connection). */
  attempt?: number;
  /** reconnecting: how long until the next attempt. */
  delayMs?: number;
  /** reconnecting: why the connection broke; closed: why it ended (undefined after `close()`). */
  error?: SigilError;
  /** open: the new session's hash. */
  sessionHash?: string;
}

/** One step of the protocol, as `onTrace` gets it. Sizes are of whole WebSocket messages. */
export type TraceEntry =
  | { kind: "connecting"; url: string; attempt: number }
  | { kind: "hello"; dir: "out"; bytes: number }
  | { kind: "answer"; dir: "in"; bytes: number }
  | { kind: "refusal"; dir: "in"; code: RefusalCode; reason: string }
  | { kind: "session"; sessionHash: string }
  | { kind: "frame"; dir: "out" | "in"; seq: number; bytes: number }
  | { kind: "close"; by: "client" | "server"; code: number; reason?: string };

/** The options of `Client.connect` other than the key. */
export interface CommonConnectOptions {
  /** The server's public key (base64 or SPKI PEM), pinned: as `sigil serve` prints it. */
  serverKey: string;
  /** A pre-shared key, base64 of 32 bytes (e.g. from `deriveSharedKey`); the server must use the same. */
  psk?: string;
  /** Bytes both sides agree on out of band (a string is taken as UTF-8); never sent. */
  prologue?: string | Uint8Array;
  /** A JSON value sent with the hello, for the server's handshake hook (at most 4096 bytes of JSON). */
  payload?: unknown;
  /** How long to wait for the connection and handshake, in milliseconds (default 10000). */
  timeoutMs?: number;
  /** The deadline of a call that sets none, in milliseconds (default 30000). */
  callTimeoutMs?: number;
  /**
   * Make the connection again when it breaks (after the first one was made): `true` for the
   * defaults. Each attempt is a fresh socket and handshake; calls in flight at the break reject
   * with `connection_closed` (never resent), open streams end with it, calls made while
   * reconnecting reject at once. Refusals other than busy (3) and stale (5) end the client.
   */
  reconnect?: boolean | ReconnectOptions;
  /** Called (as a microtask) on each state change. */
  onState?: (change: StateChange) => void;
  /** Called (as a microtask) for each step of the protocol: a live log. */
  onTrace?: (entry: TraceEntry) => void;
}

/** Options of one call. */
export interface CallOptions {
  /** This call's deadline in milliseconds: past it the call rejects with `timeout` and the server stops it. */
  timeoutMs?: number;
  /** Aborting it rejects the call with `cancelled` at once and stops it on the server. */
  signal?: AbortSignal;
}

/** Options of one stream (`client.stream`). */
export interface StreamOptions {
  /** How many items the server may send before this side takes them (1 to 65536, default 16): the most a stream buffers. */
  window?: number;
  /** The deadline of the first item in milliseconds (default: the connection's `callTimeoutMs`): past it `next()` rejects with `timeout` and the server stops the stream. */
  timeoutMs?: number;
  /** After the first item, reject with `timeout` when no item comes for this long while the server may send one (default: wait as long as it takes, as a watch does). */
  idleTimeoutMs?: number;
  /** Aborting it cancels the stream: the `next()` waiting, or the next one, rejects with `cancelled`, and the server stops it. */
  signal?: AbortSignal;
}

/**
 * A stream's items as an async iterator: `for await (const item of client.stream(...))`.
 * Items are JSON values. The iteration ends when the server ends the stream; an error
 * (`SigilRpcError`, or `SigilConnectionError` when the connection ends) rejects `next()`
 * once, after the items that came before it, and the iterator is done from then on.
 * `return()` (which `break` out of `for await` calls) cancels the stream on the server
 * and drops what it had buffered. Taking an item lets the server send another.
 */
export interface SigilStream<T = unknown> extends AsyncIterableIterator<T> {
  next(): Promise<IteratorResult<T, undefined>>;
  return(): Promise<IteratorResult<T, undefined>>;
  [Symbol.asyncIterator](): SigilStream<T>;
}

export interface Client {
  /**
   * Opens a stream: `method` of `object` with `args` (an array of JSON values), its items
   * as an async iterator. A stream that cannot be opened (bad name or arguments, closed
   * connection, aborted signal, bad options) does not throw here: its first `next()` rejects.
   */
  stream<T = unknown>(object: string, method: string, args?: unknown[], options?: StreamOptions): SigilStream<T>;
}

/** Refusal codes: 1 handshake failed, 2 rejected by the application, 3 busy, 4 unsupported version, 5 stale or replayed (others may come from newer servers). */
export type RefusalCode = 1 | 2 | 3 | 4 | 5 | number;

/** RPC error codes; `unknown` stands for a code this client does not know. */
export type RpcErrorCode =
  | "no_such_object"
  | "no_such_method"
  | "invalid_request"
  | "invalid_arguments"
  | "application_error"
  | "too_large"
  | "busy"
  | "timeout"
  | "internal_error"
  | "cancelled"
  | "unknown";

/**
 * Connection error codes:
 * - `connection_closed`: no server at the URL, the upgrade was refused, or the connection ended (calls in flight reject with it);
 * - `timeout`: the handshake did not complete within `timeoutMs`;
 * - `handshake_failed`: the server's answer did not authenticate (it does not hold the pinned key, or psk/prologue differ), or it does not speak `sigil.v1`;
 * - `protocol_error`: after the handshake, a frame did not authenticate or was not a valid response (the connection is closed).
 */
export type ConnectionErrorCode = "connection_closed" | "timeout" | "handshake_failed" | "protocol_error";

/** Usage error codes: a key that is not a key, or an unusable option. */
export type UsageErrorCode = "invalid_key" | "invalid_options";

/** Identity error codes: no WebCrypto X25519 here (`unsupported`), or IndexedDB failed (`storage_failed`). */
export type IdentityErrorCode = "unsupported" | "storage_failed";

/** The server refused the handshake. Refusals are not authenticated: they inform, they prove nothing. */
export interface SigilRefused extends Error {
  name: "SigilRefused";
  code: RefusalCode;
  /** The server's reason, for people. */
  reason: string;
}

/** A call failed: the server's RPC error, or the same error found before sending. */
export interface SigilRpcError extends Error {
  name: "SigilRpcError";
  code: RpcErrorCode;
}

/** The connection could not be made, or ended. */
export interface SigilConnectionError extends Error {
  name: "SigilConnectionError";
  code: ConnectionErrorCode;
}

/** A key or option given by the caller is unusable. */
export interface SigilUsageError extends Error {
  name: "SigilUsageError";
  code: UsageErrorCode;
}

/** An `Identity` could not be made, saved or loaded. */
export interface SigilIdentityError extends Error {
  name: "SigilIdentityError";
  code: IdentityErrorCode;
}

/** Every error sigil-wasm throws or rejects with. */
export type SigilError = SigilRefused | SigilRpcError | SigilConnectionError | SigilUsageError | SigilIdentityError;
