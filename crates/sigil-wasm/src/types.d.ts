
/** A key pair as base64 text (the same text as `wg genkey` / `wg pubkey` and the `sigil` command). */
export interface KeyPair {
  /** The secret key: keep it secret. */
  secretKey: string;
  /** The public key: give it to servers that should accept this client. */
  publicKey: string;
}

/** The options of `Client.connect`. */
export interface ConnectOptions {
  /** The server's public key (base64 or SPKI PEM), pinned: as `sigil serve` prints it. */
  serverKey: string;
  /** This client's secret key (base64 or PKCS#8 PEM). */
  secretKey: string;
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

/** Every error sigil-wasm throws or rejects with. */
export type SigilError = SigilRefused | SigilRpcError | SigilConnectionError | SigilUsageError;
