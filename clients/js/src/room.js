// One room as the application sees it: messages once and in order, its
// state (stale until acknowledged after a partial resume), presence,
// typing, read positions, and history pages. The connection itself is the
// client's (client.js), reached through a `RoomLink`.
//
// Over 400 lines: the application's side of a room and the client's side
// (frames routed to it) share the room's private state; ordering and
// de-duplication are in sequencer.js.
//
// A room's stream holds messages and changes to them (edits, deletes),
// each under a seq of its own. Whatever is read back from the store (a
// join's page, a replay, a history page) shows messages as they are now,
// so a history page skips the seqs of changes: a hole in it is no missing
// message, and a change to a message read back is in it already.

import { Emitter } from "./emitter.js";
import { RookeryError } from "./errors.js";
import { Sequencer, isChange } from "./sequencer.js";

/** @typedef {import("../types/index.js").Message} Message */
/** @typedef {import("../types/index.js").Change} Change */
/** @typedef {import("../types/index.js").Changed} Changed */
/** @typedef {import("../types/index.js").ChangeOptions} ChangeOptions */
/** @typedef {Message | Change} Item */
/** @typedef {import("../types/index.js").StoredMessage} StoredMessage */
/** @typedef {import("../types/index.js").RoomEvents} RoomEvents */
/** @typedef {import("../types/index.js").RoomState} RoomState */
/** @typedef {import("../types/index.js").StaleInfo} StaleInfo */
/** @typedef {import("../types/index.js").Sent} Sent */
/** @typedef {import("../types/index.js").SendOptions} SendOptions */
/** @typedef {import("../types/index.js").FastSendOptions} FastSendOptions */
/** @typedef {import("../types/index.js").HistoryOptions} HistoryOptions */
/** @typedef {import("../types/index.js").Delivered} Delivered */
/** @typedef {import("../types/index.js").ClientEvents} ClientEvents */

/**
 * What a room needs from its client.
 * @typedef {object} RoomLink
 * @property {(frame: Record<string, unknown>) => boolean} write a frame on the open connection (false: none)
 * @property {() => boolean} isOpen
 * @property {(prefix: string) => string} nextRef
 * @property {(room: Room, text: string, options: SendOptions | FastSendOptions) => Promise<Sent | void>} send
 * @property {(room: Room, change: { type: "edit" | "delete", id: string, text?: string }, options: ChangeOptions) => Promise<Changed>} change
 * @property {<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]) => void} emit on the client
 * @property {(room: Room) => void} join ask the server to join (fresh, or resume when known)
 * @property {(room: Room) => void} left
 * @property {(event: keyof ClientEvents) => number} listenerCount on the client
 * @property {{ gapWait: number, maxStaleBuffer: number, historyTimeout: number }} options
 */

/**
 * @typedef {object} HistoryRequest
 * @property {number | undefined} before
 * @property {number} limit
 * @property {(messages: StoredMessage[]) => void} resolve
 * @property {(error: RookeryError) => void} reject
 * @property {boolean} sent
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 */

/**
 * @typedef {object} StaleState
 * @property {StaleInfo} info the first partial resume's
 * @property {{ from: number, to: number | null }[]} holes seqs missing, inclusive
 * @property {Item[]} buffer what arrived since, in order, held from the application
 */

const MAX_IDS = 5000;
const GAP_FILL_ATTEMPTS = 3;

/** @extends {Emitter<RoomEvents>} */
export class Room extends Emitter {
  /** @type {RoomLink} */ #link;
  /** @type {RoomState} */ #state = "joining";
  #sequencer = new Sequencer();
  /** seq -> id of recent stored messages, to answer an ack with the message's id. */
  /** @type {Map<number, string>} */ #ids = new Map();
  /** @type {Map<number, ((id: string) => void)[]>} */ #idWaiters = new Map();
  /**
   * Messages known deleted: id -> the delete seen (null: a message read
   * back deleted). An edit of one is not handed out (it can only come from
   * an edit racing the delete; its text is erased), and a retried delete
   * refused `not_found` finds its own here.
   * @type {Map<string, { seq: number, from: string } | null>}
   */
  #deleted = new Map();
  /** Changes a replay brought for messages it holds in their current state already: counted, not handed out. */
  /** @type {WeakSet<Change>} */ #quiet = new WeakSet();
  /** @type {StaleState | null} */ #stale = null;
  /** @type {HistoryRequest[]} */ #historyQueue = [];
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #gapTimer;
  #gapAttempts = 0;
  #lastSeq = 0;
  /** @type {string[]} */ #online = [];
  /** @type {Map<string, number>} */ #reads = new Map();
  /** @type {StoredMessage[]} */ #latest = [];
  #readSent = 0;
  #readWanted = 0;
  /**
   * Messages (and changes) that came while a fresh join was pending, and
   * right after its answer (before the application's `await join()`
   * continued and added its listeners): handed out a moment later, minus
   * what the join's history holds.
   * @type {Item[] | null}
   */
  #early = null;
  /** @type {((room: Room) => void)[]} */ #joinWaiters = [];
  /** @type {((error: RookeryError) => void)[]} */ #joinRejecters = [];

  /**
   * Made by the client; applications get rooms from `client.join()`.
   * @param {string} name
   * @param {RoomLink} link
   */
  constructor(name, link) {
    super();
    this.name = name;
    this.direct = name.startsWith("@");
    this.#link = link;
    /** The application asked for this room (join, not left): it is joined and resumed on every connection. */
    this.wanted = false;
    /** A `joined` answered on the current connection. */
    this.joined = false;
    /** A join was answered once: reconnects resume instead of joining afresh. */
    this.everJoined = false;
    /** The seq a pending resume started from, until its `joined` comes. @type {number | undefined} */
    this.resumedFrom = undefined;
  }

  /** @returns {RoomState} */
  get state() {
    return this.#state;
  }

  get latest() {
    return this.#latest;
  }

  get lastSeq() {
    return this.#lastSeq;
  }

  get online() {
    return this.#online;
  }

  get reads() {
    return /** @type {ReadonlyMap<string, number>} */ (this.#reads);
  }

  /** @returns {StaleInfo | null} */
  get staleInfo() {
    return this.#stale ? this.#stale.info : null;
  }

  // ---- the application's side -----------------------------------------

  /**
   * @overload
   * @param {string} text
   * @param {SendOptions} [options]
   * @returns {Promise<Sent>}
   */
  /**
   * @overload
   * @param {string} text
   * @param {FastSendOptions} options
   * @returns {Promise<void>}
   */
  /**
   * @param {string} text
   * @param {SendOptions | FastSendOptions} [options]
   * @returns {Promise<Sent | void>}
   */
  send(text, options = {}) {
    return this.#link.send(this, text, options);
  }

  /**
   * Makes your message `id` say `text`: resolves with the edit's own seq once stored.
   * @param {string} id
   * @param {string} text
   * @param {ChangeOptions} [options]
   * @returns {Promise<Changed>}
   */
  edit(id, text, options = {}) {
    return this.#link.change(this, { type: "edit", id, text }, options);
  }

  /**
   * Deletes your message `id` (operators: anyone's): resolves with the delete's own seq once stored.
   * @param {string} id
   * @param {ChangeOptions} [options]
   * @returns {Promise<Changed>}
   */
  delete(id, options = {}) {
    return this.#link.change(this, { type: "delete", id }, options);
  }

  /** @param {boolean} [active] */
  typing(active = true) {
    if (this.joined) this.#link.write({ type: "typing", room: this.name, active });
  }

  /** @param {number} [seq] */
  read(seq = this.#lastSeq) {
    this.#readWanted = Math.max(this.#readWanted, seq);
    this.#flushRead();
  }

  /**
   * @param {HistoryOptions} [options]
   * @returns {AsyncIterableIterator<StoredMessage[]>}
   */
  async *history(options = {}) {
    const limit = Math.min(100, Math.max(1, options.limit ?? 50));
    let before = options.before;
    for (;;) {
      if (before !== undefined && before <= 1) return;
      const page = await this.#requestHistory(before, limit);
      if (page.length === 0) return;
      yield page;
      before = page[0].seq;
    }
  }

  async leave() {
    if (this.#state === "left") return;
    this.wanted = false;
    this.#setState("left");
    if (this.joined) this.#link.write({ type: "leave", room: this.name });
    this.joined = false;
    this.everJoined = false;
    this.#stale = null;
    this.#early = null;
    clearTimeout(this.#gapTimer);
    const error = new RookeryError("left", `left ${this.name}`, { room: this.name });
    for (const request of this.#historyQueue.splice(0)) {
      clearTimeout(request.timer);
      request.reject(error);
    }
    this.#failJoin(error);
    // A direct conversation keeps delivering new messages, in arrival order.
    this.#sequencer.reset(null);
    this.#sequencer.loose = true;
    this.#link.left(this);
  }

  /** @returns {Promise<Message[]>} */
  async reload() {
    const stale = this.#stale;
    if (!stale) return [];
    this.#stale = null;
    // The messages held, with the changes held applied: what they say now.
    // Changes to messages not among them are of messages no longer shown.
    /** @type {Map<string, Message>} */
    const messages = new Map();
    for (const item of stale.buffer) {
      if (item.seq !== null) this.#lastSeq = Math.max(this.#lastSeq, item.seq);
      if (!isChange(item)) {
        messages.set(item.id, item);
        continue;
      }
      const message = messages.get(item.id);
      if (!message || message.deleted) continue;
      if (item.type === "edit") {
        messages.set(item.id, { ...message, text: item.text, edited: item.ts });
      } else {
        const { text: _gone, ...rest } = message;
        messages.set(item.id, { ...rest, deleted: true });
      }
    }
    this.#setState("live");
    return [...messages.values()];
  }

  /** @returns {Promise<number>} */
  async catchUp() {
    const stale = this.#stale;
    if (!stale) return 0;
    /** @type {Map<string, Item>} */
    const found = new Map();
    // Holes may be added while this runs (another partial resume). History
    // pages hold messages only (as they are now): the seqs of the hole's
    // edits and deletes never come, and a short page is the room's start.
    for (let i = 0; i < stale.holes.length; i++) {
      const hole = stale.holes[i];
      let before = hole.to !== null ? hole.to + 1 : lowestSeq(stale.buffer);
      for (;;) {
        const page = await this.#requestHistory(before, 100);
        for (const message of page) {
          if (message.seq >= hole.from && (hole.to === null || message.seq <= hole.to)) {
            found.set(message.id, message);
          }
        }
        if (page.length < 100 || page[0].seq <= hole.from) break;
        before = page[0].seq;
      }
      if (this.#stale !== stale) return 0; // left or reloaded meanwhile
    }
    for (const item of stale.buffer) found.set(isChange(item) ? `change:${item.seq}` : item.id, item);
    const ordered = [...found.values()].sort(bySeq);
    this.#sequencer.remember(ordered);
    this.#stale = null;
    this.#setState("live");
    let handed = 0;
    for (const item of ordered) if (this.#hand(item)) handed += 1;
    return handed;
  }

  // ---- the client's side (not part of the public API) ------------------

  /**
   * Waits for this room's `joined` (the client sent `join` or `resume`).
   * @returns {Promise<Room>}
   */
  _whenJoined() {
    if (this.joined && this.#state !== "joining") return Promise.resolve(this);
    return new Promise((resolve, reject) => {
      this.#joinWaiters.push(resolve);
      this.#joinRejecters.push(reject);
    });
  }

  /** @param {RookeryError} error */
  _joinRefused(error) {
    this.wanted = false;
    this.#setState("left");
    this.#failJoin(error);
  }

  /** @param {RookeryError} error */
  #failJoin(error) {
    const rejecters = this.#joinRejecters.splice(0);
    this.#joinWaiters.length = 0;
    for (const reject of rejecters) reject(error);
  }

  /** A new join by the application (or again after `leave`). */
  _want() {
    this.wanted = true;
    this.#sequencer.loose = false;
    if (this.#state === "left") this.#setState("joining");
    if (this._resumePoint() === null) this.#early ??= [];
  }

  /**
   * Where a resume starts: the newest seq in order; null to join afresh. A
   * direct conversation seen live but never joined resumes after what was
   * handed out, so joining it replays only what is new.
   */
  _resumePoint() {
    if (this.everJoined || this.#sequencer.known) return this.#sequencer.last;
    return null;
  }

  /** A direct conversation seen live, not joined: delivered as it comes. */
  _loose() {
    this.#sequencer.loose = true;
    this.#setState("live");
  }

  /**
   * The client stopped for good: what waits rejects.
   * @param {RookeryError} error
   */
  _fail(error) {
    clearTimeout(this.#gapTimer);
    for (const request of this.#historyQueue.splice(0)) {
      clearTimeout(request.timer);
      request.reject(error);
    }
    this.#failJoin(error);
  }

  /**
   * The server's `joined`; `resumedFrom` set when it answers a `resume`.
   * @param {{ seq?: number, history: StoredMessage[], changes?: Change[], online: string[], read: { user: string, seq: number }[], recovered?: boolean }} frame
   */
  _onJoined(frame) {
    const resumedFrom = this.resumedFrom;
    this.resumedFrom = undefined;
    this.joined = true;
    this.#online = frame.online;
    for (const { user, seq } of frame.read) this.#reads.set(user, Math.max(seq, this.#reads.get(user) ?? 0));
    for (const message of frame.history) {
      this.#noteId(message);
      this.#noteDeleted(message);
    }
    // A resume's replay: its messages as they are now, and the edits and
    // deletes since the resume point, each under its own seq. A change to a
    // message the replay holds is in it already: it is counted (seq order,
    // lastSeq), not handed out again.
    const changes = Array.isArray(frame.changes) ? frame.changes : [];
    const replayed = new Set(frame.history.map((message) => message.id));
    for (const change of changes) {
      this.#noteDeleted(change);
      if (replayed.has(change.id)) this.#quiet.add(change);
    }
    /** @type {Item[]} */
    const events = changes.length === 0 ? frame.history : [...frame.history, ...changes].sort(bySeq);
    if (resumedFrom === undefined) {
      // A fresh join: its history is what the room looks like now, and
      // `seq` where the room's stream stands (its newest seqs may be edits
      // and deletes, shown in the messages). From a server without `seq`,
      // the first event after it continues the order wherever it is.
      const page = frame.history.length > 0 ? frame.history[frame.history.length - 1].seq : null;
      const position = typeof frame.seq === "number" ? frame.seq : null;
      const newest = position ?? page;
      this.#sequencer.reset(newest, { open: position === null });
      this.#sequencer.remember(frame.history);
      this.#latest = frame.history;
      this.#lastSeq = newest ?? 0;
      this.everJoined = true;
      this.#setState("live");
      this.#early ??= [];
      setTimeout(() => {
        const early = this.#early ?? [];
        this.#early = null;
        for (const message of early.sort(bySeq)) this.#accept(message);
      }, 0);
    } else if (frame.recovered === false) {
      this.everJoined = true;
      // The replay is partial: the newest are there, a hole lies before them.
      const first = events.length > 0 ? /** @type {number} */ (events[0].seq) : null;
      const hole = { from: resumedFrom + 1, to: first !== null ? first - 1 : null };
      if (!this.#stale) {
        const info = {
          room: this.name,
          lastSeen: this.#lastSeq,
          firstReplayed: first,
          missed: first !== null ? first - resumedFrom - 1 : null,
        };
        this.#stale = { info, holes: [], buffer: [] };
      }
      if (hole.to === null || hole.to >= hole.from) this.#stale.holes.push(hole);
      this.#sequencer.loose = false;
      this.#sequencer.reset(first !== null ? first - 1 : null);
      const info = this.#stale.info;
      this.#setState("stale");
      const heard = this.emit("stale", info);
      this.#link.emit("stale", info);
      if (!heard && this.#link.listenerCount("stale") === 0) {
        console.warn(
          `rookery: room ${this.name} is stale (a resume missed ${info.missed ?? "some"} messages); ` +
            "its messages are held until room.reload() or room.catchUp() is called",
        );
      }
      for (const item of events) this.#accept(item);
    } else {
      this.everJoined = true;
      this.#sequencer.loose = false;
      if (this.#state === "joining") this.#setState("live");
      for (const item of events) this.#accept(item);
    }
    const waiters = this.#joinWaiters.splice(0);
    this.#joinRejecters.length = 0;
    for (const resolve of waiters) resolve(this);
    this.#pumpHistory();
    this.#flushRead();
    this.emit("presence", { room: this.name, online: this.#online });
  }

  /**
   * A message for this room (live, fetched from the inbox, or replayed), or
   * a change to one (an `edit` or `delete` frame).
   * @param {Item} message
   */
  _onMessage(message) {
    if (isChange(message)) this.#noteDeleted(message);
    else this.#noteId(message);
    if (this.#early) {
      if (this.#early.length < 10_000) this.#early.push(message);
      return;
    }
    this.#accept(message);
  }

  /** @param {{ messages: StoredMessage[] }} frame */
  _onHistory(frame) {
    const head = this.#historyQueue[0];
    if (!head || !head.sent) return;
    // History answers carry no request id; one is outstanding per room at a
    // time, and an answer that does not fit it is a late one to drop.
    const fits =
      frame.messages.length <= head.limit &&
      frame.messages.every((m) => head.before === undefined || m.seq < head.before);
    if (!fits) return;
    this.#historyQueue.shift();
    clearTimeout(head.timer);
    for (const message of frame.messages) this.#noteId(message);
    head.resolve(frame.messages);
    this.#pumpHistory();
  }

  /** @param {RookeryError} error a history request's refusal */
  _historyRefused(error) {
    const head = this.#historyQueue[0];
    if (!head || !head.sent) return false;
    this.#historyQueue.shift();
    clearTimeout(head.timer);
    head.reject(error);
    this.#pumpHistory();
    return true;
  }

  /** @param {{ online: string[] }} frame */
  _onPresence(frame) {
    this.#online = frame.online;
    this.emit("presence", { room: this.name, online: frame.online });
  }

  /** @param {{ user: string, active: boolean }} frame */
  _onTyping(frame) {
    this.emit("typing", { room: this.name, user: frame.user, active: frame.active });
  }

  /** @param {{ user: string, seq: number }} frame */
  _onRead(frame) {
    this.#reads.set(frame.user, Math.max(frame.seq, this.#reads.get(frame.user) ?? 0));
    this.emit("read", { room: this.name, user: frame.user, seq: frame.seq });
  }

  /** @param {Delivered} receipt */
  _onDelivered(receipt) {
    this.emit("delivered", receipt);
  }

  /** The connection broke: nothing is joined on the next one until it answers. */
  _connectionLost() {
    this.joined = false;
    this.resumedFrom = undefined;
    if (this.#state === "joining" && !this.everJoined) {
      // still joining: the next connection asks again
    }
    for (const request of this.#historyQueue) {
      request.sent = false;
      clearTimeout(request.timer);
    }
    clearTimeout(this.#gapTimer);
    this.#gapTimer = undefined;
    this.#gapAttempts = 0;
    // Not joined: there is no resume for it, so in-order delivery restarts
    // from whatever comes next (its messages are still de-duplicated by id).
    if (!this.wanted) this.#sequencer.reset(null);
    else if (this._resumePoint() === null) this.#early ??= [];
  }

  /**
   * The delete of message `id` seen in this room, once the current
   * connection's `joined` (and its replay) is in: what a retried delete
   * refused `not_found` looks for (its original was stored, the ack lost).
   * @param {string} id
   * @returns {Promise<{ seq: number, from: string } | null>}
   */
  async _deleteOf(id) {
    if (!this.joined && this.wanted) {
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const late = new Promise((resolve) => {
        timer = setTimeout(resolve, this.#link.options.historyTimeout);
      });
      await Promise.race([this._whenJoined().catch(() => {}), late]);
      clearTimeout(timer);
    }
    return this.#deleted.get(id) ?? null;
  }

  /**
   * The id of stored message `seq`, once known (an ack carries only the seq).
   * @param {number} seq
   * @returns {Promise<string>}
   */
  _idOf(seq) {
    const known = this.#ids.get(seq);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => {
      const waiting = this.#idWaiters.get(seq) ?? [];
      waiting.push(resolve);
      this.#idWaiters.set(seq, waiting);
      // Normally the message itself comes right after the ack. If it does
      // not (it was in a replay we cut, or the connection broke), read it.
      setTimeout(() => {
        if (this.#idWaiters.has(seq)) this.#requestHistory(seq + 1, 1).catch(() => {});
      }, Math.max(1000, this.#link.options.gapWait));
    });
  }

  // ---- inside ----------------------------------------------------------

  /** @param {RoomState} state */
  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }

  /**
   * Records a delete (or a message read back deleted).
   * @param {Item} item
   */
  #noteDeleted(item) {
    if (item.type === "delete") this.#deleted.set(item.id, { seq: item.seq, from: item.from });
    else if (!isChange(item) && item.deleted && !this.#deleted.has(item.id)) this.#deleted.set(item.id, null);
    else return;
    if (this.#deleted.size > MAX_IDS) {
      const oldest = this.#deleted.keys().next().value;
      if (oldest !== undefined) this.#deleted.delete(oldest);
    }
  }

  /** @param {Message} message */
  #noteId(message) {
    if (message.seq === null || message.seq === undefined) return;
    this.#ids.set(message.seq, message.id);
    if (this.#ids.size > MAX_IDS) {
      const oldest = this.#ids.keys().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
    const waiting = this.#idWaiters.get(message.seq);
    if (waiting) {
      this.#idWaiters.delete(message.seq);
      for (const resolve of waiting) resolve(message.id);
    }
  }

  /** @param {Item} message */
  #accept(message) {
    for (const out of this.#sequencer.push(message)) this.#deliver(out);
    this.#watchGap();
  }

  /** @param {Item} message */
  #deliver(message) {
    if (this.#stale) {
      const stale = this.#stale;
      stale.buffer.push(message);
      if (stale.buffer.length > this.#link.options.maxStaleBuffer) {
        // Keep the newest; what falls out becomes part of a hole catchUp
        // fills (a message is read back as it is now; an edit or delete of
        // an older message cannot be).
        const dropped = /** @type {Item} */ (stale.buffer.shift());
        if (dropped.seq !== null) {
          const last = stale.holes[stale.holes.length - 1];
          if (last && last.to !== null && last.to === dropped.seq - 1) last.to = dropped.seq;
          else stale.holes.push({ from: dropped.seq, to: dropped.seq });
        }
      }
      return;
    }
    this.#hand(message);
  }

  /**
   * Hands an event to the application; false when there was nothing to
   * hand out (a change already in the messages shown, or an edit of a
   * deleted message), which still counts as seen (lastSeq).
   * @param {Item} item
   */
  #hand(item) {
    if (item.seq !== null) this.#lastSeq = Math.max(this.#lastSeq, item.seq);
    if (!isChange(item)) {
      this.#noteDeleted(item);
      this.emit("message", item);
      this.#link.emit("message", item);
      return true;
    }
    if (this.#quiet.has(item)) return false;
    if (item.type === "edit") {
      if (this.#deleted.has(item.id)) return false;
      this.emit("edit", item);
      this.#link.emit("edit", item);
    } else {
      this.emit("delete", item);
      this.#link.emit("delete", item);
    }
    return true;
  }

  /**
   * A gap in seqs: wait a moment (the server fills its own), then read it from history.
   * @returns {void}
   */
  #watchGap() {
    const gap = this.#sequencer.gap;
    if (gap === null) {
      clearTimeout(this.#gapTimer);
      this.#gapTimer = undefined;
      this.#gapAttempts = 0;
      return;
    }
    if (this.#sequencer.fastExplainsGap) {
      // Fast messages seen live were stored under these seqs.
      for (const out of this.#sequencer.skipGap()) this.#deliver(out);
      return this.#watchGap();
    }
    if (this.#gapTimer !== undefined) return;
    this.#gapTimer = setTimeout(() => this.#fillGap(), this.#link.options.gapWait);
  }

  async #fillGap() {
    const gap = this.#sequencer.gap;
    if (gap === null) {
      this.#gapTimer = undefined;
      return;
    }
    this.#gapAttempts += 1;
    const limit = Math.min(100, gap.to - gap.from + 1);
    /** @type {StoredMessage[] | null} */
    let page = null;
    try {
      if (this.joined) page = await this.#requestHistory(gap.to + 1, limit);
    } catch {
      // counted as an attempt
    }
    for (const message of page ?? []) for (const out of this.#sequencer.push(message)) this.#deliver(out);
    if (page !== null) {
      // The page holds every message from its oldest (from the room's
      // start, when short) up to the gap's end: the gap's seqs it covers
      // and does not hold are edits or deletes, which history never has.
      // They were not received: passed over, and reported as a gap.
      const covered = page.length < limit ? 1 : page[0].seq;
      const messages = new Set(page.map((message) => message.seq));
      /** @type {number[]} */
      const changes = [];
      for (let seq = Math.max(gap.from, covered); seq <= gap.to; seq++) {
        if (!messages.has(seq) && this.#sequencer.awaits(seq)) changes.push(seq);
      }
      if (changes.length > 0) {
        this.emit("gap", { room: this.name, from: changes[0], to: changes[changes.length - 1] });
        for (const out of this.#sequencer.pass(changes)) this.#deliver(out);
      }
    }
    this.#gapTimer = undefined;
    const still = this.#sequencer.gap;
    if (still !== null && this.#gapAttempts >= GAP_FILL_ATTEMPTS) {
      this.emit("gap", { room: this.name, from: still.from, to: still.to });
      for (const out of this.#sequencer.skipGap()) this.#deliver(out);
    }
    this.#watchGap();
  }

  /**
   * @param {number | undefined} before
   * @param {number} limit
   * @returns {Promise<StoredMessage[]>}
   */
  #requestHistory(before, limit) {
    if (!this.wanted) {
      if (!this.direct) return Promise.reject(new RookeryError("left", `left ${this.name}`, { room: this.name }));
      // A direct conversation seen live: reading its history needs it joined.
      this._want();
      this.#link.join(this);
    }
    return new Promise((resolve, reject) => {
      this.#historyQueue.push({ before, limit, resolve, reject, sent: false, timer: undefined });
      this.#pumpHistory();
    });
  }

  #pumpHistory() {
    const head = this.#historyQueue[0];
    if (!head || head.sent || !this.joined || !this.#link.isOpen()) return;
    /** @type {Record<string, unknown>} */
    const frame = { type: "history", room: this.name, limit: head.limit, ref: this.#link.nextRef("h") };
    if (head.before !== undefined) frame.before = head.before;
    if (!this.#link.write(frame)) return;
    head.sent = true;
    head.timer = setTimeout(() => {
      if (this.#historyQueue[0] !== head) return;
      this.#historyQueue.shift();
      head.reject(new RookeryError("timeout", `no history answer for ${this.name}`, { room: this.name }));
      this.#pumpHistory();
    }, this.#link.options.historyTimeout);
  }

  #flushRead() {
    if (this.#readWanted > this.#readSent && this.joined) {
      if (this.#link.write({ type: "read", room: this.name, seq: this.#readWanted })) {
        this.#readSent = this.#readWanted;
      }
    }
  }
}

/**
 * @param {Item} a
 * @param {Item} b
 */
const bySeq = (a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity);

/**
 * @param {readonly Item[]} messages
 * @returns {number | undefined}
 */
function lowestSeq(messages) {
  let lowest;
  for (const message of messages) {
    if (message.seq !== null && (lowest === undefined || message.seq < lowest)) lowest = message.seq;
  }
  return lowest === undefined ? undefined : lowest + 0;
}
