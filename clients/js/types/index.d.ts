// Types of @rookery/client, written by hand and checked by `tsc --noEmit`
// (clients/js/tsconfig.json) against the JavaScript in src/: check/
// conformance.ts asserts the implementation's own (JSDoc) types fit these.
// The wire shapes follow docs/PROTOCOL.md; the server API's follow its
// OpenAPI document (GET /api/v1/openapi.json).
//
// Over 400 lines: the whole public API in one declaration file, as the
// package's `types` entry.

// ---- errors -------------------------------------------------------------

/** Error codes of the WebSocket protocol (docs/PROTOCOL.md, "Error codes"). */
export type ServerErrorCode =
  | "malformed"
  | "unknown_type"
  | "invalid_frame"
  | "invalid_room"
  | "invalid_user"
  | "unknown_user"
  | "empty_text"
  | "text_too_long"
  | "not_joined"
  | "rate_limited"
  | "store_unavailable"
  | "store_uncertain"
  | "overloaded"
  | "unsupported"
  | "forbidden"
  | "not_found"
  | "authorization_unavailable";

/** Codes of the SDK itself. */
export type ClientErrorCode =
  /** The bounded outgoing queue is full (`ClientOptions.maxQueue`). */
  | "queue_full"
  /** The client was closed (by `close()`, or for good by the server: see `closeCode`/`closeReason`) before an answer came. */
  | "closed"
  /** `connect()` could not open its first connection. */
  | "connect_failed"
  /** The room was left before the operation finished. */
  | "left"
  /** No answer in time (history pages). */
  | "timeout";

/** Codes of the server API (`ErrorDetail.code` of the OpenAPI document) and of the HTTP login. */
export type HttpErrorCode =
  | "bad_request"
  | "body_too_large"
  | "unauthorized"
  | "not_found"
  | "unknown_room"
  | "conflict"
  | "unavailable"
  | "http_error";

/** Every code a RookeryError can carry; a newer server may send others (hence `string & {}`). */
export type ErrorCode = ServerErrorCode | ClientErrorCode | HttpErrorCode | (string & {});

/** The one error type of the SDK: switch on `code`. */
export class RookeryError extends Error {
  constructor(
    code: ErrorCode,
    message: string,
    details?: {
      ref?: unknown;
      room?: string;
      to?: string;
      status?: number;
      retryAfter?: number;
      closeCode?: number;
      closeReason?: string;
    },
  );
  readonly name: "RookeryError" | string;
  code: ErrorCode;
  /** The `ref` of the refused frame, when it had one. */
  ref: unknown;
  /** The room the refused operation was about, when known. */
  room: string | undefined;
  /** For a refused `direct`/`group` recipient: who. */
  to: string | undefined;
  /** HTTP status, for login and server API errors. */
  status: number | undefined;
  /** Seconds to wait, from a 429's `Retry-After`. */
  retryAfter: number | undefined;
  /** For `closed` after the server ended the client: its close code and reason. */
  closeCode: number | undefined;
  closeReason: string | undefined;
}

// ---- events -------------------------------------------------------------

/** A small typed event emitter. */
export class Emitter<Events extends object> {
  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(event: K, listener: (value: Events[K]) => void): () => void;
  off<K extends keyof Events>(event: K, listener: (value: Events[K]) => void): void;
  /** The next `event`, as a promise. */
  once<K extends keyof Events>(event: K): Promise<Events[K]>;
  listenerCount(event: keyof Events): number;
  emit<K extends keyof Events>(event: K, value: Events[K]): boolean;
}

// ---- messages -----------------------------------------------------------

/**
 * A chat message (`message` frame, history entry), as the server sends it.
 * Read back from the store (a join's or a replay's history, a history page,
 * a gap filled, the offline inbox) it is in its current state: `edited`
 * once edited (with the new `text`), `deleted` and no `text` once deleted.
 */
export interface Message {
  /** Set on messages that came as a live `message` frame; absent on history entries. */
  type?: "message";
  room: string;
  /** Its place in the room; `null` for a `fast` message seen live before it was stored. */
  seq: number | null;
  /** Unique per message: opaque (20 hex digits today, 16 for older messages). */
  id: string;
  /** A user name, or `system:NAME` for a backend's system sender. */
  from: string;
  avatar: string | null;
  /** What it says now; absent once deleted. */
  text?: string;
  /** RFC 3339. */
  ts: string;
  /** A direct message read back from the store: it reached its recipient. */
  delivered?: boolean;
  /** RFC 3339: when its text was last edited (on messages read back from the store). */
  edited?: string;
  /** Taken back by its author or an operator: it keeps its place, its `text` is gone. */
  deleted?: true;
}

/** Message `id` says `text` now: an edit by its author, `seq` of the room's stream (the `edit` frame). */
export interface Edit {
  type: "edit";
  room: string;
  /** The edit's own place in the room (not the message's). */
  seq: number;
  /** The message edited. */
  id: string;
  /** Who edited it (its author). */
  from: string;
  text: string;
  /** RFC 3339: the message's `edited` from now on. */
  ts: string;
}

/** Message `id` was deleted by `from` (its author or an operator): show it without its text (the `delete` frame). */
export interface Delete {
  type: "delete";
  room: string;
  /** The delete's own place in the room (not the message's). */
  seq: number;
  /** The message deleted. */
  id: string;
  from: string;
  /** RFC 3339. */
  ts: string;
}

/** An edit or a delete: a change to a message, an event of the room's seq stream. */
export type Change = Edit | Delete;

/** A stored message: history pages and replays only hold these. */
export interface StoredMessage extends Message {
  seq: number;
}

/** What an acked send resolves with. */
export interface Sent {
  /** Where the message is stored: `seq` of `room`. */
  seq: number;
  id: string;
  room: string;
  /** The frame's `ref` (for matching `delivered` receipts). */
  ref: string;
}

export type Delivery = "reliable" | "fast";

export interface SendOptions {
  delivery?: "reliable";
  /** A ref of your own (a string unique among your recent messages, at most 128 bytes as JSON); one is made otherwise. */
  ref?: string;
}

export interface FastSendOptions {
  delivery: "fast";
  ref?: string;
}

export interface ChangeOptions {
  /** A ref of your own (unique among your recent messages and changes, at most 128 bytes as JSON); one is made otherwise. */
  ref?: string;
}

/** What an acked edit or delete resolves with. */
export interface Changed {
  /** The change's own seq in `room`. */
  seq: number;
  room: string;
  /** The frame's `ref`. */
  ref: string;
}

export interface DirectOptions extends SendOptions {
  /** Ask for a `delivered` receipt (default `true`). */
  confirm?: boolean;
}

/** One recipient's outcome of `group`. */
export type GroupOutcome =
  | { to: string; ok: true; sent: Sent }
  | { to: string; ok: false; error: RookeryError };

/** A `delivered` receipt: direct message `ref` (acked as `seq` of `room`) reached a connection of `to`. */
export interface Delivered {
  ref: unknown;
  to: string;
  room: string;
  seq: number;
}

/** A reader's position. */
export interface ReadPosition {
  user: string;
  seq: number;
}

/** Why a room went stale: a resume could not replay everything that was missed. */
export interface StaleInfo {
  room: string;
  /** The newest seq the application was given before the connection broke. */
  lastSeen: number;
  /** The oldest seq the replay held (`null`: none, the store was unavailable). */
  firstReplayed: number | null;
  /** How many seqs (messages, edits and deletes) are missing between them (`null`: unknown). */
  missed: number | null;
}

// ---- rooms --------------------------------------------------------------

/**
 * - `joining`: waiting for the server's `joined`;
 * - `live`: messages are delivered as they come;
 * - `stale`: a resume came back `recovered:false`: messages are held until the
 *   application calls `reload()` or `catchUp()`;
 * - `left`: `leave()` was called (a direct room still gets new messages).
 */
export type RoomState = "joining" | "live" | "stale" | "left";

export interface RoomEvents {
  /** A message, once, in order (stored ones by `seq`; fast ones at once). */
  message: Message;
  /** A message was edited: once, in `seq` order with the messages (never before the message it edits). */
  edit: Edit;
  /** A message was deleted: once, in `seq` order with the messages. */
  delete: Delete;
  /** The room went stale: call `reload()` or `catchUp()`. */
  stale: StaleInfo;
  state: RoomState;
  presence: { room: string; online: string[] };
  typing: { room: string; user: string; active: boolean };
  read: { room: string; user: string; seq: number };
  delivered: Delivered;
  /** Seqs the SDK could not get (history could not fill a gap, or they were edits or deletes it never received): should not happen. */
  gap: { room: string; from: number; to: number };
}

export interface HistoryOptions {
  /** Start below this seq (default: the newest message). */
  before?: number;
  /** Messages per page, 1–100 (default 50). */
  limit?: number;
}

export class Room extends Emitter<RoomEvents> {
  /** Rooms come from `client.join()` (and direct conversations from the client). */
  private constructor(name: string, link: never);
  readonly name: string;
  /** `@a:b` rooms. */
  readonly direct: boolean;
  readonly state: RoomState;
  /** Joined on the current connection. */
  readonly joined: boolean;
  /** The room's newest messages when it was joined (the `joined` answer), oldest first; empty for a direct conversation already seen live, which is resumed rather than joined. */
  readonly latest: readonly StoredMessage[];
  /** The newest seq handed to the application (0: none): of a message, an edit or a delete. */
  readonly lastSeq: number;
  readonly online: readonly string[];
  /** How far each member has read. */
  readonly reads: ReadonlyMap<string, number>;
  /** Set while `state` is `stale`. */
  readonly staleInfo: StaleInfo | null;

  /** Resolves with the `ack` (and the message's id) once stored; rejects with the refusal's code. */
  send(text: string, options?: SendOptions): Promise<Sent>;
  /** A `fast` message: no ack; resolves once written to an open connection. */
  send(text: string, options: FastSendOptions): Promise<void>;
  /** Makes your message `id` say `text`; resolves with the edit's own seq once stored (rejects with `not_found`, `forbidden`, `empty_text`, ...). Kept and retried like a send. */
  edit(id: string, text: string, options?: ChangeOptions): Promise<Changed>;
  /** Deletes your message `id` (operators: anyone's); resolves with the delete's own seq once stored (rejects with `not_found`, `forbidden`, ...). Kept and retried like a send. */
  delete(id: string, options?: ChangeOptions): Promise<Changed>;
  /** Tell the room you are (not) typing. */
  typing(active?: boolean): void;
  /** Tell the room you have read up to `seq` (default: `lastSeq`). */
  read(seq?: number): void;
  /** Pages back through the room's history, newest page first; each page oldest first. */
  history(options?: HistoryOptions): AsyncIterableIterator<StoredMessage[]>;
  /** Stop receiving the room. */
  leave(): Promise<void>;
  /** Acknowledge a stale room by starting over: resolves with the newest messages held, with the edits and deletes held applied (render them instead of what was shown); live again. */
  reload(): Promise<Message[]>;
  /** Acknowledge a stale room by fetching what was missed (history): it is delivered as `message` (and `edit`, `delete`) events, in order; live again. Resolves with how many events were delivered. Edits and deletes inside the hole of messages older than it cannot be read back: `reload()` when they matter. */
  catchUp(): Promise<number>;
}

// ---- client -------------------------------------------------------------

/** The part of a WebSocket the SDK uses (the browser's, Node 22's global, undici's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: "close", listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: "error", listener: (event: unknown) => void): void;
}

/** A WebSocket constructor. The SDK passes `{ headers: { cookie } }` as second argument only when `cookie` is set (Node). */
export type WebSocketConstructor = new (url: string, options?: any) => WebSocketLike;

export interface BackoffOptions {
  /** First delay (ms, default 500). */
  initialDelay?: number;
  /** Largest delay (ms, default 10 000). */
  maxDelay?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Fraction of each delay that is random, 0–1 (default 0.5). */
  jitter?: number;
}

export interface ClientOptions {
  /**
   * Where to connect: `ws(s)://host/ws`, or `http(s)://host` (`/ws` is added).
   * Several: tried in turn on each reconnect (as a load balancer would
   * move you). A function: called with the attempt number.
   */
  url: string | readonly string[] | ((attempt: number) => string);
  /** Node: the session cookie from `login()` (`rookery_session=…`). Browsers send theirs by themselves. */
  cookie?: string;
  /** The WebSocket to use (default: the global one; Node 20 has it only with `--experimental-websocket`). */
  WebSocket?: WebSocketConstructor;
  /** Your user name, if known (needed to tell `group` acks apart when you are a recipient too). */
  user?: string;
  reconnect?: BackoffOptions & {
    /** Also retry the first connection of `connect()` (default false: it rejects). */
    retryFirst?: boolean;
  };
  /** Sends that may wait for their ack at once (default 1000); past it `send` rejects with `queue_full`. */
  maxQueue?: number;
  /** Pace frames under the server's per-connection rate (default 18/s, burst 36); `false` to turn off. */
  frameRate?: { rate: number; burst: number } | false;
  /** A connection not open after this long (ms, default 10 000) is given up and tried again. */
  connectTimeout?: number;
  /** After this much silence (ms, default 10 000) ask `ping`; no answer within `pongTimeout` means the replica is gone. */
  pingAfter?: number;
  pongTimeout?: number;
  /** How long (ms, default 1000) a gap in a room's seqs may wait before it is filled from history. */
  gapWait?: number;
  /** Fetch the offline inbox (`pending` → `fetch_missed`) by itself (default true). */
  fetchMissed?: boolean;
  /** After a `reconnect` frame: how long (ms, default 2000) to wait for acks before moving. */
  moveWait?: number;
  /** Messages kept for a stale room until it is acknowledged (default 1000; older ones are refetched by `catchUp`). */
  maxStaleBuffer?: number;
  /** How many times a send refused with `store_uncertain`/`overloaded` is retried before it rejects (default 6). */
  sendRetries?: number;
}

/**
 * - `idle`: not connected yet;
 * - `connecting`: the first connection is opening;
 * - `open`: connected;
 * - `reconnecting`: the connection broke; a new one will open by itself;
 * - `closed`: for good (`close()`, or the server said not to come back).
 */
export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ClientEvents {
  state: ClientState;
  /** A connection opened (`attempt` 0 for the first). */
  open: { url: string; attempt: number };
  /** The connection broke; the next attempt comes after `delay` ms. */
  reconnecting: { code: number; reason: string; delay: number; attempt: number };
  /** The client stopped for good; `code`/`reason` from the server (or 1000 after `close()`). */
  close: { code: number; reason: string };
  /** Every message of every room (also direct messages of rooms not joined). */
  message: Message;
  /** Every room's edits. */
  edit: Edit;
  /** Every room's deletes. */
  delete: Delete;
  /** A room went stale (also emitted by the room). */
  stale: StaleInfo;
  /** Direct messages arrived while you were away; the SDK fetches them. */
  pending: { count: number };
  /** The offline inbox was fetched: how many messages, from whom. */
  inbox: { count: number; from: string[] };
  delivered: Delivered;
  /** Admins only: a connection of `user` opened on replica `node`. */
  userConnected: { user: string; node: string };
  userDisconnected: { user: string; node: string };
  /** The server refused something not tied to a promise (typing, read...). */
  error: RookeryError;
}

export class Client extends Emitter<ClientEvents> {
  constructor(options: ClientOptions);
  readonly state: ClientState;
  /** Your user name, once known (option, login, or learned from an ack). */
  readonly user: string | null;
  /** Rooms by name: joined ones, and direct conversations seen. */
  readonly rooms: ReadonlyMap<string, Room>;
  /** Sends waiting for their answer. */
  readonly queued: number;
  /** Opens the connection; resolves once it is open. */
  connect(): Promise<void>;
  /** Joins a room (or direct room `@a:b`); resolves once the server answered `joined`. */
  join(name: string): Promise<Room>;
  room(name: string): Room | undefined;
  /** A direct message to `to`, in the room `@a:b`; resolves with the ack. */
  direct(to: string, text: string, options?: DirectOptions): Promise<Sent>;
  /** A direct message to each of 1–50 users; resolves with one outcome per (distinct) recipient. Rejects if the frame was refused as a whole. */
  group(to: readonly string[], text: string, options?: DirectOptions): Promise<GroupOutcome[]>;
  /** Closes for good; what waits for an answer rejects with `closed`. */
  close(): void;
}

/** The name of the direct room of `a` and `b` (`@a:b`, names sorted). */
export function directRoom(a: string, b: string): string;

/** `new Client(options)`, logged in first when `credentials` are given, then `connect()`ed. */
export function connect(
  options: ClientOptions & {
    credentials?: { name: string; password?: string; token?: string; action?: "login" | "register" };
    fetch?: typeof fetch;
  },
): Promise<Client>;

// ---- HTTP login ---------------------------------------------------------

export interface LoginOptions {
  /** The server: `http(s)://host` (a `ws(s)://host/ws` URL works too). */
  url: string;
  name: string;
  password?: string;
  /** For an identity provider (auth webhook) instead of a password. */
  token?: string;
  /** `login` (an existing account only), `register` (a new one only); default: either. */
  action?: "login" | "register";
  fetch?: typeof fetch;
}

export interface LoginResult {
  /** The name logged in as. */
  user: string;
  /** `rookery_session=…` for Node's WebSocket (`cookie` option); `null` in browsers, which keep it themselves. */
  cookie: string | null;
}

/** `POST /login`; rejects with `unauthorized` (401), `conflict` (409), `bad_request`, `rate_limited` (429), `unavailable` (503). */
export function login(options: LoginOptions): Promise<LoginResult>;
/** `POST /logout`: ends the login and its connections on every replica. */
export function logout(options: { url: string; cookie?: string; fetch?: typeof fetch }): Promise<void>;

// ---- server API (/api/v1, for backends) --------------------------------

export namespace api {
  /** `PublishRequest`: exactly one of `from` and `system`. */
  type PublishRequest = { text: string; fast?: boolean } & (
    | { from: string; system?: never }
    | { system: string; from?: never }
  );
  /** `BroadcastRequest`. */
  type BroadcastRequest = PublishRequest & { rooms: string[] };
  /** `DirectRequest`. */
  interface DirectRequest {
    from: string;
    text: string;
  }
  /** `Published`: `seq` is `null` for a fast publish. */
  interface Published {
    room: string;
    id: string;
    seq?: number | null;
  }
  interface ErrorDetail {
    code: string;
    message: string;
  }
  /** `RoomResult`. */
  interface RoomResult {
    room: string;
    seq?: number | null;
    id?: string | null;
    error?: ErrorDetail | null;
  }
  interface BroadcastResult {
    results: RoomResult[];
  }
  /** `Message` (always stored), in its current state. */
  interface Message {
    room: string;
    seq: number;
    id: string;
    from: string;
    /** Absent once deleted. */
    text?: string;
    ts: string;
    avatar?: string | null;
    /** RFC 3339: when its text was last edited. */
    edited?: string;
    deleted?: boolean;
  }
  interface History {
    room: string;
    messages: Message[];
    more: boolean;
  }
  interface Presence {
    room: string;
    online: string[];
  }
  interface Connection {
    node: string;
    connected_at: string;
    rooms: string[];
  }
  interface Connections {
    user: string;
    connections: Connection[];
  }
  type Reason = "disconnected" | "revoked";
  interface DisconnectRequest {
    reason?: Reason;
    refuse_seconds?: number;
  }
  interface Disconnected {
    user: string;
    reason: Reason;
    everywhere: boolean;
    refused_until?: string | null;
  }
  interface HistoryQuery {
    before?: number;
    after?: number;
    limit?: number;
  }
  interface Idempotent {
    /** `Idempotency-Key`: a retried request with the same key stores once. */
    idempotencyKey?: string;
  }
}

export interface ServerApiOptions {
  /** `http(s)://host` of any replica (or the load balancer). */
  url: string;
  /** One of the server's `API_KEYS`. */
  apiKey: string;
  fetch?: typeof fetch;
}

/** A thin typed wrapper of `/api/v1`; errors reject as RookeryError with the body's `code` and the `status`. */
export class ServerApi {
  constructor(options: ServerApiOptions);
  /** `POST /rooms/{room}/messages` (201 stored, 202 fast). */
  publish(room: string, body: api.PublishRequest, options?: api.Idempotent): Promise<api.Published>;
  /** `POST /users/{user}/messages`. */
  direct(user: string, body: api.DirectRequest, options?: api.Idempotent): Promise<api.Published>;
  /** `POST /broadcast`. */
  broadcast(body: api.BroadcastRequest, options?: api.Idempotent): Promise<api.BroadcastResult>;
  /** `GET /rooms/{room}/messages`. */
  history(room: string, query?: api.HistoryQuery): Promise<api.History>;
  /** `GET /rooms/{room}/presence`. */
  presence(room: string): Promise<api.Presence>;
  /** `GET /users/{user}/connections`. */
  connections(user: string): Promise<api.Connections>;
  /** `POST /users/{user}/disconnect`. */
  disconnect(user: string, body?: api.DisconnectRequest): Promise<api.Disconnected>;
  /** `GET /openapi.json`. */
  openapi(): Promise<Record<string, unknown>>;
}

/** The server API operations this wrapper covers, by OpenAPI `operationId`. */
export const API_OPERATIONS: readonly string[];

// ---- building blocks (exported for tests and for other clients) ---------

/** Jittered exponential backoff. */
export class Backoff {
  constructor(options?: BackoffOptions & { random?: () => number });
  initialDelay: number;
  maxDelay: number;
  factor: number;
  jitter: number;
  random: () => number;
  readonly attempt: number;
  next(): number;
  atLeast(ms: number): void;
  reset(): void;
}

export type CloseDecision =
  | { reconnect: false; why: "revoked" | "logged_out" | "replaced" | "closed" }
  | { reconnect: true; minDelay: number; soon: boolean };

/** What the server's close code and reason mean for reconnecting. */
export function closeDecision(code: number, reason: string): CloseDecision;

/** Ordering and de-duplication of one room's events: messages (by `id` and `seq`), edits and deletes (by `seq`). */
export class Sequencer {
  constructor(options?: { maxSeen?: number; maxHeld?: number; loose?: boolean });
  maxSeen: number;
  maxHeld: number;
  loose: boolean;
  readonly last: number;
  readonly known: boolean;
  readonly held: number;
  readonly gap: { from: number; to: number } | null;
  readonly fastExplainsGap: boolean;
  /** Whether `seq` is still to come (above what was handed out, not held). */
  awaits(seq: number): boolean;
  /** `open`: the seqs right after `seq` may be edits and deletes already shown in the messages (a join's page): the first event above it continues the order. */
  reset(seq: number | null, options?: { open?: boolean }): void;
  remember(events: readonly (Message | Change)[]): void;
  hasSeen(id: string): boolean;
  push(event: Message | Change): (Message | Change)[];
  /** Seqs known to hold nothing to hand out (edits or deletes history proved are not messages): passed over. */
  pass(seqs: Iterable<number>): (Message | Change)[];
  skipGap(): (Message | Change)[];
}
