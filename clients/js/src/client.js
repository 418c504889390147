// The connection: opening it, reconnecting by the server's rules, resuming
// every room, keeping unacked sends and retrying them, the offline inbox,
// and routing the server's frames to rooms. docs/PROTOCOL.md is the
// contract; static/chat.js was the first client to follow it.
//
// Over 400 lines: one connection's state machine, whose parts share its
// private state; the logic that stands alone (ordering and de-duplication,
// backoff and close codes, the bounded queue) is in its own modules.

import { Backoff, closeDecision } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { RookeryError, isRetryable } from "./errors.js";
import { httpBase, login, wsUrl } from "./http.js";
import { Outbox, TokenBucket } from "./queue.js";
import { Room } from "./room.js";

/** @typedef {import("../types/index.js").ClientOptions} ClientOptions */
/** @typedef {import("../types/index.js").ClientEvents} ClientEvents */
/** @typedef {import("../types/index.js").ClientState} ClientState */
/** @typedef {import("../types/index.js").WebSocketLike} WebSocketLike */
/** @typedef {import("../types/index.js").WebSocketConstructor} WebSocketConstructor */
/** @typedef {import("../types/index.js").Sent} Sent */
/** @typedef {import("../types/index.js").SendOptions} SendOptions */
/** @typedef {import("../types/index.js").FastSendOptions} FastSendOptions */
/** @typedef {import("../types/index.js").DirectOptions} DirectOptions */
/** @typedef {import("../types/index.js").GroupOutcome} GroupOutcome */
/** @typedef {import("../types/index.js").Message} Message */
/** @typedef {import("../types/index.js").Change} Change */
/** @typedef {import("../types/index.js").Changed} Changed */
/** @typedef {import("../types/index.js").ChangeOptions} ChangeOptions */

/**
 * Something sent that waits for the server: a `send`/`direct` (its ack), a
 * `group` (an answer per recipient), a `fast` send (just the wire), or a
 * `change` (an edit or a delete: its ack).
 * @typedef {object} Entry
 * @property {string} ref
 * @property {"send" | "direct" | "group" | "fast" | "change"} kind
 * @property {Record<string, unknown>} frame
 * @property {string | undefined} room the room of a `send`
 * @property {boolean} written went out on some connection (so it goes again as a retry)
 * @property {boolean} retried its last frame went out with `retry:true`
 * @property {number} conn the connection it last went out on
 * @property {number} attempts retries after `store_uncertain`/`overloaded`
 * @property {ReturnType<typeof setTimeout> | undefined} timer a retry waiting
 * @property {(value: any) => void} resolve
 * @property {(error: RookeryError) => void} reject
 * @property {string[]} recipients a group's
 * @property {Map<string, Promise<GroupOutcome>>} answers a group's, by recipient
 * @property {RookeryError[]} unattributed a group's refusals that name nobody
 */

/** Refusals of a `group` frame as a whole (not per recipient). */
const WHOLE_GROUP_CODES = new Set([
  "malformed",
  "unknown_type",
  "invalid_frame",
  "invalid_user",
  "empty_text",
  "text_too_long",
  "rate_limited",
]);

/** Join refusals that may not name the room. */
const JOIN_REFUSALS = new Set(["invalid_room", "forbidden", "authorization_unavailable"]);

const OPEN = 1;
/** The protocol's bound on a `ref` (as JSON). */
const MAX_REF_BYTES = 128;
/** A connection that lasted this long resets the backoff. */
const STABLE_MS = 5_000;
const SOON_MS = 100;

/**
 * @param {string} a
 * @param {string} b
 */
export const directRoom = (a, b) => (a <= b ? `@${a}:${b}` : `@${b}:${a}`);

/** @extends {Emitter<ClientEvents>} */
export class Client extends Emitter {
  /** @type {Required<Omit<ClientOptions, "cookie" | "user" | "WebSocket" | "url" | "reconnect" | "frameRate">> & { retryFirst: boolean, historyTimeout: number }} */
  #options;
  /** @type {(attempt: number) => string} */ #urlFor;
  /** @type {WebSocketConstructor | undefined} */ #WebSocket;
  /** @type {string | undefined} */ #cookie;
  /** @type {ClientState} */ #state = "idle";
  /** @type {string | null} */ #user;
  /** @type {WebSocketLike | null} */ #ws = null;
  #conn = 0;
  #tries = 0;
  #everOpened = false;
  #openedAt = 0;
  #lastFrameAt = 0;
  #pingedAt = 0;
  #moving = false;
  #closed = false;
  #backoff;
  /** @type {Outbox<Entry>} */ #outbox;
  /** @type {TokenBucket | null} */ #bucket;
  /** @type {string[]} */ #wire = [];
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #wireTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #reconnectTimer;
  /** @type {ReturnType<typeof setInterval> | undefined} */ #pingTimer;
  /** @type {Map<string, Room>} */ #rooms = new Map();
  /** @type {{ count: number, from: Set<string>, held: (Message | Change)[] } | null} */ #inbox = null;
  /** @type {Promise<void> | null} */ #connecting = null;
  /** @type {{ resolve: () => void, reject: (error: RookeryError) => void } | null} */ #connectWaiter = null;
  /** Internal refs (join, resume, history) -> what to do if the frame was dropped as rate_limited. */
  /** @type {Map<string, () => void>} */ #internal = new Map();
  #refPrefix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  #refCount = 0;
  /** @type {import("./room.js").RoomLink} */ #link;

  /** @param {ClientOptions} options */
  constructor(options) {
    super();
    const url = options.url;
    if (typeof url === "function") this.#urlFor = url;
    else if (typeof url === "string") this.#urlFor = () => url;
    else if (Array.isArray(url) && url.length > 0) this.#urlFor = (attempt) => url[attempt % url.length];
    else throw new TypeError("ClientOptions.url: a URL, a non-empty list of URLs, or a function");
    this.#WebSocket = options.WebSocket;
    this.#cookie = options.cookie;
    this.#user = options.user ?? null;
    const reconnect = options.reconnect ?? {};
    this.#backoff = new Backoff(reconnect);
    this.#options = {
      retryFirst: reconnect.retryFirst ?? false,
      maxQueue: options.maxQueue ?? 1000,
      pingAfter: options.pingAfter ?? 10_000,
      pongTimeout: options.pongTimeout ?? 5_000,
      gapWait: options.gapWait ?? 1_000,
      fetchMissed: options.fetchMissed ?? true,
      moveWait: options.moveWait ?? 2_000,
      maxStaleBuffer: options.maxStaleBuffer ?? 1000,
      sendRetries: options.sendRetries ?? 6,
      historyTimeout: 20_000,
      connectTimeout: options.connectTimeout ?? 10_000,
    };
    const rate = options.frameRate === undefined ? { rate: 18, burst: 36 } : options.frameRate;
    this.#bucket = rate === false ? null : new TokenBucket(rate.rate, rate.burst);
    this.#outbox = new Outbox(this.#options.maxQueue);
    this.#link = {
      write: (frame) => this.#write(frame),
      isOpen: () => this.#isOpen(),
      nextRef: (prefix) => this.#nextRef(prefix),
      send: (room, text, sendOptions) => this.#send(room, text, sendOptions),
      change: (room, change, changeOptions) => this.#change(room, change, changeOptions),
      emit: (event, value) => {
        this.emit(event, value);
      },
      listenerCount: (event) => this.listenerCount(event),
      join: (room) => this.#sendJoin(room),
      left: (room) => {
        if (!room.direct && this.#rooms.get(room.name) === room) this.#rooms.delete(room.name);
      },
      options: this.#options,
    };
  }

  /** @returns {ClientState} */
  get state() {
    return this.#state;
  }

  get user() {
    return this.#user;
  }

  get rooms() {
    return /** @type {ReadonlyMap<string, Room>} */ (this.#rooms);
  }

  get queued() {
    return this.#outbox.size;
  }

  /** @returns {Promise<void>} */
  connect() {
    if (this.#closed) return Promise.reject(new RookeryError("closed", "the client is closed"));
    if (this.#state === "open") return Promise.resolve();
    if (!this.#connecting) {
      this.#connecting = new Promise((resolve, reject) => {
        this.#connectWaiter = { resolve, reject };
      });
      if (this.#state === "idle") {
        this.#setState("connecting");
        this.#open();
      }
    }
    return this.#connecting;
  }

  /**
   * @param {string} name
   * @returns {Promise<Room>}
   */
  join(name) {
    if (this.#closed) return Promise.reject(new RookeryError("closed", "the client is closed", { room: name }));
    let room = this.#rooms.get(name);
    if (!room) {
      room = new Room(name, this.#link);
      this.#rooms.set(name, room);
    }
    // Joined before: the room is the application's, whatever the connection does.
    if (room.wanted && room.everJoined) return Promise.resolve(room);
    const joined = room._whenJoined();
    if (!room.wanted) {
      room._want();
      this.#sendJoin(room);
    }
    return joined;
  }

  /** @param {string} name */
  room(name) {
    return this.#rooms.get(name);
  }

  /**
   * @param {string} to
   * @param {string} text
   * @param {DirectOptions} [options]
   * @returns {Promise<Sent>}
   */
  direct(to, text, options = {}) {
    const ref = options.ref ?? this.#nextRef("d");
    /** @type {Record<string, unknown>} */
    const frame = { type: "direct", to, text, ref, confirm: options.confirm ?? true };
    if (options.delivery) frame.delivery = options.delivery;
    return this.#enqueue("direct", ref, frame, undefined);
  }

  /**
   * @param {readonly string[]} to
   * @param {string} text
   * @param {DirectOptions} [options]
   * @returns {Promise<GroupOutcome[]>}
   */
  group(to, text, options = {}) {
    const ref = options.ref ?? this.#nextRef("g");
    const recipients = [...new Set(to)].sort();
    /** @type {Record<string, unknown>} */
    const frame = { type: "group", to: recipients, text, ref, confirm: options.confirm ?? true };
    if (options.delivery) frame.delivery = options.delivery;
    return this.#enqueue("group", ref, frame, undefined, recipients);
  }

  close() {
    if (this.#closed) return;
    const ws = this.#ws;
    this.#ws = null;
    try {
      ws?.close(1000, "closed by the client");
    } catch {
      // already closing
    }
    this.#finish(1000, "closed by the client", "closed");
  }

  // ---- sending ---------------------------------------------------------

  /**
   * @param {Room} room
   * @param {string} text
   * @param {SendOptions | FastSendOptions} options
   * @returns {Promise<Sent | void>}
   */
  #send(room, text, options) {
    const ref = options.ref ?? this.#nextRef("s");
    /** @type {Record<string, unknown>} */
    const frame = { type: "send", room: room.name, text, ref };
    if (options.delivery === "fast") {
      frame.delivery = "fast";
      return this.#enqueue("fast", ref, frame, room.name);
    }
    return this.#enqueue("send", ref, frame, room.name);
  }

  /**
   * An edit or a delete: kept until answered and retried like a send.
   * @param {Room} room
   * @param {{ type: "edit" | "delete", id: string, text?: string }} change
   * @param {ChangeOptions} options
   * @returns {Promise<Changed>}
   */
  #change(room, change, options) {
    const ref = options.ref ?? this.#nextRef(change.type === "edit" ? "e" : "x");
    /** @type {Record<string, unknown>} */
    const frame = { type: change.type, room: room.name, id: change.id, ref };
    if (change.type === "edit") frame.text = change.text;
    return this.#enqueue("change", ref, frame, room.name);
  }

  /**
   * @param {Entry["kind"]} kind
   * @param {string} ref
   * @param {Record<string, unknown>} frame
   * @param {string | undefined} room
   * @param {string[]} [recipients]
   * @returns {Promise<any>}
   */
  #enqueue(kind, ref, frame, room, recipients = []) {
    if (this.#closed) return Promise.reject(new RookeryError("closed", "the client is closed", { ref, room }));
    if (new TextEncoder().encode(JSON.stringify(ref)).length > MAX_REF_BYTES) {
      // The server would refuse it without echoing the ref: no answer could be matched.
      return Promise.reject(new RookeryError("invalid_frame", `a ref is at most ${MAX_REF_BYTES} bytes as JSON`, { room }));
    }
    return new Promise((resolve, reject) => {
      /** @type {Entry} */
      const entry = {
        ref, kind, frame, room, written: false, retried: false, conn: 0, attempts: 0, timer: undefined,
        resolve, reject, recipients, answers: new Map(), unattributed: [],
      };
      try {
        this.#outbox.add(entry);
      } catch (error) {
        reject(error);
        return;
      }
      this.#writeEntry(entry);
    });
  }

  /** @param {Entry} entry */
  #writeEntry(entry) {
    if (!this.#isOpen() || this.#moving) return;
    const frame = { ...entry.frame };
    if (entry.kind === "group") frame.to = entry.recipients.filter((to) => !entry.answers.has(to));
    // Anything that went out before goes again as a retry: if the server
    // stored it, it answers with the stored seq instead of storing it twice.
    if (entry.written && entry.kind !== "fast") frame.retry = true;
    if (!this.#write(frame)) return;
    entry.written = true;
    entry.retried = frame.retry === true;
    entry.conn = this.#conn;
    if (entry.kind === "fast") {
      this.#outbox.delete(entry.ref);
      entry.resolve(undefined);
    }
  }

  /**
   * @param {Entry} entry
   * @param {RookeryError} error
   */
  #retryLater(entry, error) {
    if (entry.attempts >= this.#options.sendRetries) return false;
    entry.attempts += 1;
    const pause = Math.min(1000 * 2 ** (entry.attempts - 1), 10_000);
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.#outbox.get(entry.ref) !== entry) return;
      entry.written = true; // the retry flag: it may be stored
      this.#writeEntry(entry);
    }, pause);
    void error;
    return true;
  }

  /**
   * @param {any} frame
   */
  #onAck(frame) {
    const entry = typeof frame.ref === "string" ? this.#outbox.get(frame.ref) : undefined;
    if (!entry) return;
    const roomName = String(frame.room);
    const seq = Number(frame.seq);
    if (entry.kind === "group") {
      const recipient = this.#recipientOf(entry, roomName);
      if (recipient === null || entry.answers.has(recipient)) return;
      entry.answers.set(recipient, this.#sent(entry.ref, roomName, seq).then(
        (sent) => /** @type {GroupOutcome} */ ({ to: recipient, ok: true, sent }),
        (error) => /** @type {GroupOutcome} */ ({ to: recipient, ok: false, error }),
      ));
      this.#groupSettled(entry);
      return;
    }
    this.#outbox.delete(entry.ref);
    clearTimeout(entry.timer);
    if (entry.kind === "change") {
      // The change's own seq; its id is the message's, which the caller has.
      entry.resolve(/** @type {Changed} */ ({ seq, room: roomName, ref: entry.ref }));
      return;
    }
    if (entry.kind === "direct" && this.#user === null) {
      const [a, b] = roomName.slice(1).split(":");
      this.#user = a === b ? a : a === entry.frame.to ? b : a;
    }
    this.#sent(entry.ref, roomName, seq).then(entry.resolve, entry.reject);
  }

  /**
   * The ack's answer: its seq, and the message's id once the message is seen.
   * @param {string} ref
   * @param {string} roomName
   * @param {number} seq
   * @returns {Promise<Sent>}
   */
  async #sent(ref, roomName, seq) {
    const room = this.#roomFor(roomName);
    if (!room) return { ref, room: roomName, seq, id: "" };
    const id = await room._idOf(seq);
    return { ref, room: roomName, seq, id };
  }

  /**
   * Which recipient a group's ack (in `@a:b`) is for.
   * @param {Entry} entry
   * @param {string} roomName
   */
  #recipientOf(entry, roomName) {
    const [a, b] = roomName.slice(1).split(":");
    if (a === b) {
      this.#user ??= a;
      return a;
    }
    if (this.#user !== null) return a === this.#user ? b : a;
    const open = entry.recipients.filter((to) => !entry.answers.has(to));
    const inA = open.includes(a);
    const inB = open.includes(b);
    if (inA && !inB) return a;
    if (inB && !inA) return b;
    return inA ? a : null;
  }

  /** @param {Entry} entry */
  #groupSettled(entry) {
    if (entry.answers.size + entry.unattributed.length < entry.recipients.length) return;
    // Refusals that named nobody go, in order, to the recipients left (the
    // server handles recipients sorted, and answers refusals in that order).
    const left = entry.recipients.filter((to) => !entry.answers.has(to));
    left.forEach((to, i) => {
      const error = entry.unattributed[i];
      error.to = to;
      entry.answers.set(to, Promise.resolve({ to, ok: false, error }));
    });
    this.#outbox.delete(entry.ref);
    clearTimeout(entry.timer);
    Promise.all(entry.recipients.map((to) => /** @type {Promise<GroupOutcome>} */ (entry.answers.get(to))))
      .then(entry.resolve, entry.reject);
  }

  /**
   * @param {Entry} entry
   * @param {RookeryError} error
   */
  #entryRefused(entry, error) {
    error.room ??= entry.room;
    if (entry.kind === "group") {
      if (WHOLE_GROUP_CODES.has(error.code)) {
        this.#outbox.delete(entry.ref);
        clearTimeout(entry.timer);
        entry.reject(error);
        return;
      }
      const named = entry.recipients.find((to) => !entry.answers.has(to) && error.message.includes(JSON.stringify(to)));
      if (isRetryable(error.code) && this.#retryLater(entry, error)) return;
      if (named !== undefined) {
        error.to = named;
        entry.answers.set(named, Promise.resolve({ to: named, ok: false, error }));
      } else {
        entry.unattributed.push(error);
      }
      this.#groupSettled(entry);
      return;
    }
    if (entry.kind === "direct") error.to ??= /** @type {string} */ (entry.frame.to);
    if (isRetryable(error.code) && this.#retryLater(entry, error)) return;
    this.#outbox.delete(entry.ref);
    clearTimeout(entry.timer);
    if (entry.kind === "change" && entry.frame.type === "delete" && entry.retried && error.code === "not_found") {
      // The server checks a delete against the message before it looks for
      // a retry's original: a delete stored before its ack was lost is
      // refused as "deleted already". The resume's replay (or the live
      // stream) shows whether that delete is ours.
      const room = this.#rooms.get(/** @type {string} */ (entry.room));
      const id = /** @type {string} */ (entry.frame.id);
      void (room ? room._deleteOf(id) : Promise.resolve(null)).then((found) => {
        if (found && (this.#user === null || found.from === this.#user)) {
          entry.resolve(/** @type {Changed} */ ({ seq: found.seq, room: entry.room, ref: entry.ref }));
        } else {
          entry.reject(error);
        }
      });
      return;
    }
    entry.reject(error);
  }

  // ---- the connection --------------------------------------------------

  /** @param {ClientState} state */
  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }

  #isOpen() {
    return this.#ws !== null && this.#state === "open" && this.#ws.readyState === OPEN;
  }

  /** @param {string} prefix */
  #nextRef(prefix) {
    this.#refCount += 1;
    return `${this.#refPrefix}-${prefix}${this.#refCount.toString(36)}`;
  }

  #open() {
    this.#reconnectTimer = undefined;
    if (this.#closed) return;
    const attempt = this.#tries;
    this.#tries += 1;
    const url = wsUrl(this.#urlFor(attempt));
    const WebSocketClass = this.#WebSocket ?? /** @type {WebSocketConstructor | undefined} */ (globalThis.WebSocket);
    if (!WebSocketClass) {
      this.#finish(1006, "no WebSocket: pass ClientOptions.WebSocket, or run Node 20 with --experimental-websocket", "connect_failed");
      return;
    }
    /** @type {WebSocketLike} */
    let ws;
    try {
      ws = this.#cookie ? new WebSocketClass(url, { headers: { cookie: this.#cookie } }) : new WebSocketClass(url);
    } catch (error) {
      this.#lost(false, 1006, String(error));
      return;
    }
    this.#ws = ws;
    let opened = false;
    // Node 20's WebSocket (undici) may report a failed handshake with an
    // `error` and no `close`, or, when the peer hangs up during it, with
    // nothing at all: a failure is also an error not followed by a close,
    // or no `open` within connectTimeout.
    const failed = () => {
      clearTimeout(handshake);
      if (this.#ws === ws && !opened) this.#abandon(ws, 1006, "could not connect");
    };
    const handshake = setTimeout(failed, this.#options.connectTimeout);
    ws.addEventListener("open", () => {
      clearTimeout(handshake);
      if (this.#ws !== ws) return;
      opened = true;
      this.#onOpen(url, attempt);
    });
    ws.addEventListener("message", (event) => {
      if (this.#ws !== ws) return;
      this.#onText(typeof event.data === "string" ? event.data : String(event.data));
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(handshake);
      if (this.#ws !== ws) return;
      this.#lost(opened, event.code, event.reason);
    });
    ws.addEventListener("error", () => {
      // Normally a close event follows.
      if (!opened) setTimeout(failed, 50);
    });
  }

  /**
   * @param {string} url
   * @param {number} attempt
   */
  #onOpen(url, attempt) {
    this.#conn += 1;
    this.#openedAt = Date.now();
    this.#lastFrameAt = this.#openedAt;
    this.#pingedAt = 0;
    this.#moving = false;
    this.#everOpened = true;
    this.#wire = [];
    this.#bucket?.refill();
    this.#setState("open");
    // Rooms resume after the newest message handed out, so what was said
    // meanwhile (on any replica) comes exactly once; new rooms join.
    /** @type {Record<string, number>} */
    const resume = {};
    let wrote = false;
    for (const room of this.#rooms.values()) {
      if (!room.wanted) continue;
      const point = room._resumePoint();
      if (point === null) {
        wrote = this.#writeJoin(room) || wrote;
      } else {
        resume[room.name] = point;
        room.resumedFrom = point;
      }
    }
    if (Object.keys(resume).length > 0) wrote = this.#writeResume(resume) || wrote;
    // What the last connection never got an answer for goes again.
    for (const entry of this.#outbox.values()) {
      if (entry.timer === undefined) {
        this.#writeEntry(entry);
        wrote = true;
      }
    }
    // The server holds a new connection's direct messages until its first frame.
    if (!wrote) this.#write({ type: "ping" });
    clearInterval(this.#pingTimer);
    const tick = Math.max(10, Math.min(1000, this.#options.pingAfter, this.#options.pongTimeout));
    this.#pingTimer = setInterval(() => this.#watchdog(), tick);
    /** @type {any} */ (this.#pingTimer).unref?.();
    this.emit("open", { url, attempt });
    const waiter = this.#connectWaiter;
    this.#connectWaiter = null;
    this.#connecting = null;
    waiter?.resolve();
  }

  /** @param {Room} room */
  #sendJoin(room) {
    if (!this.#isOpen()) return;
    const point = room._resumePoint();
    if (point === null) this.#writeJoin(room);
    else {
      room.resumedFrom = point;
      this.#writeResume({ [room.name]: point });
    }
  }

  /** @param {Room} room */
  #writeJoin(room) {
    const ref = this.#nextRef("j");
    this.#internal.set(ref, () => this.#sendJoin(room));
    return this.#write({ type: "join", room: room.name, ref });
  }

  /** @param {Record<string, number>} rooms */
  #writeResume(rooms) {
    const ref = this.#nextRef("r");
    this.#internal.set(ref, () => {
      for (const name of Object.keys(rooms)) {
        const room = this.#rooms.get(name);
        if (room && room.wanted && !room.joined) this.#sendJoin(room);
      }
    });
    if (this.#internal.size > 1000) {
      const oldest = this.#internal.keys().next().value;
      if (oldest !== undefined) this.#internal.delete(oldest);
    }
    return this.#write({ type: "resume", rooms, ref });
  }

  /**
   * Writes a frame, paced under the server's frame rate.
   * @param {Record<string, unknown>} frame
   */
  #write(frame) {
    const ws = this.#ws;
    if (!ws || !this.#isOpen()) return false;
    const text = JSON.stringify(frame);
    if (this.#wire.length === 0 && (this.#bucket === null || this.#bucket.take())) {
      try {
        ws.send(text);
      } catch {
        return false;
      }
      return true;
    }
    this.#wire.push(text);
    this.#pumpWire();
    return true;
  }

  #pumpWire() {
    if (this.#wireTimer !== undefined) return;
    const ws = this.#ws;
    while (ws && this.#isOpen() && this.#wire.length > 0 && (this.#bucket === null || this.#bucket.take())) {
      ws.send(/** @type {string} */ (this.#wire.shift()));
    }
    if (this.#wire.length > 0 && this.#bucket !== null) {
      this.#wireTimer = setTimeout(() => {
        this.#wireTimer = undefined;
        this.#pumpWire();
      }, Math.max(1, this.#bucket.wait()));
    }
  }

  /** Pings a quiet connection; gives up on one that does not answer. */
  #watchdog() {
    const ws = this.#ws;
    if (!ws || !this.#isOpen()) return;
    const now = Date.now();
    if (this.#pingedAt >= this.#lastFrameAt && now - this.#pingedAt > this.#options.pongTimeout) {
      // A stopped replica never finishes a closing handshake: drop it now.
      this.#abandon(ws, 4000, "no answer to ping");
    } else if (now - this.#lastFrameAt > this.#options.pingAfter && this.#pingedAt < this.#lastFrameAt) {
      this.#pingedAt = now;
      this.#write({ type: "ping" });
    }
  }

  /**
   * @param {WebSocketLike} ws
   * @param {number} code
   * @param {string} reason
   */
  #abandon(ws, code, reason) {
    const opened = ws.readyState === OPEN;
    this.#ws = null;
    try {
      ws.close(code === 1012 || code === 1006 ? 1000 : code, reason);
    } catch {
      // closing anyway
    }
    this.#lost(opened, code, reason);
  }

  /** The replica is shutting down: wait for acks, then move to another one. */
  #move() {
    const ws = this.#ws;
    if (!ws || this.#moving) return;
    this.#moving = true;
    const asked = Date.now();
    const conn = this.#conn;
    const leave = () => {
      if (this.#ws !== ws) return;
      const waiting = this.#outbox.values().some((e) => e.conn === conn && e.kind !== "fast");
      if (waiting && Date.now() - asked < this.#options.moveWait) {
        setTimeout(leave, 50);
        return;
      }
      this.#abandon(ws, 1012, "moving to another replica");
    };
    leave();
  }

  /**
   * The connection is gone (closed, cut, refused, or given up).
   * @param {boolean} opened
   * @param {number} code
   * @param {string} reason
   */
  #lost(opened, code, reason) {
    this.#ws = null;
    clearInterval(this.#pingTimer);
    clearTimeout(this.#wireTimer);
    this.#wireTimer = undefined;
    this.#wire = [];
    this.#moving = false;
    this.#internal.clear();
    this.#flushInbox();
    for (const room of this.#rooms.values()) room._connectionLost();
    if (this.#closed) return;
    if (!this.#everOpened && !this.#options.retryFirst) {
      this.#finish(code, reason || "could not connect", "connect_failed");
      return;
    }
    const decision = closeDecision(code, reason);
    if (!decision.reconnect) {
      this.#finish(code, reason, "closed");
      return;
    }
    if (opened && Date.now() - this.#openedAt > STABLE_MS) this.#backoff.reset();
    if (decision.minDelay > 0) this.#backoff.atLeast(decision.minDelay);
    let delay;
    if (decision.soon) {
      // The replica asked us to move: another one is up, go at once (jittered).
      delay = Math.round(SOON_MS * (0.5 + Math.random()));
    } else {
      delay = this.#backoff.next();
    }
    this.#setState(this.#everOpened ? "reconnecting" : "connecting");
    this.emit("reconnecting", { code, reason, delay, attempt: this.#tries });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.#open(), delay);
  }

  /**
   * Stops for good: everything waiting rejects.
   * @param {number} code
   * @param {string} reason
   * @param {"closed" | "connect_failed"} errorCode
   */
  #finish(code, reason, errorCode) {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#wireTimer);
    const text = errorCode === "connect_failed"
      ? `could not connect (${code}${reason ? `: ${reason}` : ""})`
      : `the client is closed (${code}${reason ? `: ${reason}` : ""})`;
    const error = () => new RookeryError(errorCode, text, { closeCode: code, closeReason: reason });
    for (const entry of this.#outbox.drain()) {
      clearTimeout(entry.timer);
      entry.reject(error());
    }
    for (const room of this.#rooms.values()) room._fail(error());
    const waiter = this.#connectWaiter;
    this.#connectWaiter = null;
    this.#connecting = null;
    waiter?.reject(error());
    this.#setState("closed");
    this.emit("close", { code, reason });
  }

  // ---- frames from the server ------------------------------------------

  /** @param {string} text */
  #onText(text) {
    this.#lastFrameAt = Date.now();
    /** @type {any} */
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "message":
      case "edit":
      case "delete":
        return this.#onMessage(frame);
      case "ack":
        return this.#onAck(frame);
      case "joined":
        return this.#rooms.get(frame.room)?._onJoined(frame);
      case "history":
        return this.#rooms.get(frame.room)?._onHistory(frame);
      case "presence":
        return this.#rooms.get(frame.room)?._onPresence(frame);
      case "typing":
        return this.#rooms.get(frame.room)?._onTyping(frame);
      case "read":
        return this.#rooms.get(frame.room)?._onRead(frame);
      case "delivered": {
        const receipt = { ref: frame.ref, to: frame.to, room: frame.room, seq: frame.seq };
        this.#roomFor(frame.room)?._onDelivered(receipt);
        this.emit("delivered", receipt);
        return;
      }
      case "pending":
        this.emit("pending", { count: frame.count });
        if (this.#options.fetchMissed) {
          this.#inbox ??= { count: 0, from: new Set(), held: [] };
          this.#inbox.count += frame.count;
          this.#write({ type: "fetch_missed", limit: 100 });
        }
        return;
      case "fetch_missed_complete":
        if (frame.left > 0) {
          this.#write({ type: "fetch_missed", limit: 100 });
          return;
        }
        return this.#flushInbox();
      case "user_connected":
        this.emit("userConnected", { user: frame.user, node: frame.node });
        return;
      case "user_disconnected":
        this.emit("userDisconnected", { user: frame.user, node: frame.node });
        return;
      case "reconnect":
        return this.#move();
      case "error":
        return this.#onError(frame);
      default:
        // pong, and frames of newer servers
        return;
    }
  }

  /**
   * The room a message or receipt belongs to; a direct conversation not
   * joined gets one (its messages reach every connection without a join).
   * @param {string} name
   */
  #roomFor(name) {
    let room = this.#rooms.get(name);
    if (!room && typeof name === "string" && name.startsWith("@")) {
      room = new Room(name, this.#link);
      room._loose();
      this.#rooms.set(name, room);
    }
    return room;
  }

  /**
   * A `message`, `edit` or `delete` frame: an event of its room's stream.
   * @param {Message | Change} message
   */
  #onMessage(message) {
    const room = this.#roomFor(message.room);
    if (!room || (room.state === "left" && !room.direct)) return;
    if (this.#inbox && !room.wanted) {
      // Fetched offline messages and live ones may interleave: sort them once all are in.
      this.#inbox.held.push(message);
      return;
    }
    if (this.#inbox && message.type !== "edit" && message.type !== "delete" && message.from !== this.#user) {
      this.#inbox.from.add(message.from);
    }
    room._onMessage(message);
  }

  #flushInbox() {
    const inbox = this.#inbox;
    if (!inbox) return;
    this.#inbox = null;
    const held = inbox.held.sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
    for (const message of held) {
      if (message.type !== "edit" && message.type !== "delete" && message.from !== this.#user) inbox.from.add(message.from);
      this.#roomFor(message.room)?._onMessage(message);
    }
    this.emit("inbox", { count: inbox.count, from: [...inbox.from].sort() });
  }

  /** @param {any} frame */
  #onError(frame) {
    const ref = frame.ref ?? undefined;
    const error = new RookeryError(String(frame.code), String(frame.message ?? frame.code), { ref });
    if (typeof ref === "string") {
      const entry = this.#outbox.get(ref);
      if (entry) return this.#entryRefused(entry, error);
      const again = this.#internal.get(ref);
      if (again && error.code === "rate_limited") {
        // A join, resume or history dropped while earlier answers were
        // still on their way: ask again in a moment.
        this.#internal.delete(ref);
        setTimeout(again, 1000);
        return;
      }
    }
    // Refusals without a ref name their room in the message (`"room"`).
    const message = error.message;
    const named = [...this.#rooms.values()].find((room) => message.includes(JSON.stringify(room.name)));
    if (named) error.room = named.name;
    if (JOIN_REFUSALS.has(error.code)) {
      const joining = named && named.wanted && !named.joined
        ? named
        : [...this.#rooms.values()].find((room) => room.wanted && !room.joined);
      if (joining) {
        error.room = joining.name;
        const wasResumed = joining.everJoined;
        joining._joinRefused(error);
        if (!joining.direct) this.#rooms.delete(joining.name);
        if (wasResumed) this.emit("error", error);
        return;
      }
    }
    if (named && (error.code === "not_joined" || /history/.test(message)) && named._historyRefused(error)) return;
    this.emit("error", error);
  }
}

/**
 * `new Client(options)`, logged in first when `credentials` are given, then connected.
 * @param {ClientOptions & { credentials?: { name: string, password?: string, token?: string, action?: "login" | "register" }, fetch?: typeof fetch }} options
 * @returns {Promise<Client>}
 */
export async function connect(options) {
  let { cookie, user } = options;
  if (options.credentials) {
    const first = typeof options.url === "function" ? options.url(0) : typeof options.url === "string" ? options.url : options.url[0];
    const result = await login({ url: httpBase(first), ...options.credentials, fetch: options.fetch });
    cookie = result.cookie ?? undefined;
    user = result.user;
  }
  const client = new Client({ ...options, cookie, user });
  await client.connect();
  return client;
}
