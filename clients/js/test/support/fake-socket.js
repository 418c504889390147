// A scripted stand-in for WebSocket: each `new FakeSocket(url)` is recorded,
// the test opens, feeds and closes it, and reads what the client wrote.
import { Client } from "../../src/index.js";

export class FakeSocket {
  /** @type {FakeSocket[]} every socket made, oldest first */
  static made = [];

  static reset() {
    FakeSocket.made = [];
  }

  /** The newest socket. */
  static get last() {
    return FakeSocket.made[FakeSocket.made.length - 1];
  }

  /** Resolves with the `n`-th socket (from 0) once it is made. */
  static async nth(n, timeout = 5000) {
    const until = Date.now() + timeout;
    while (FakeSocket.made.length <= n) {
      if (Date.now() > until) throw new Error(`socket ${n} was never made (${FakeSocket.made.length} so far)`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return FakeSocket.made[n];
  }

  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.readyState = 0;
    /** Frames the client wrote, parsed. */
    this.sent = [];
    this.closedWith = null;
    this.listeners = { open: [], message: [], close: [], error: [] };
    FakeSocket.made.push(this);
  }

  addEventListener(type, listener) {
    this.listeners[type].push(listener);
  }

  send(text) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(text));
  }

  close(code = 1000, reason = "") {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 2;
  }

  // ---- the test's side (the server) -----------------------------------

  open() {
    this.readyState = 1;
    for (const listener of this.listeners.open) listener();
  }

  /** The server sends `frame`. */
  feed(frame) {
    for (const listener of this.listeners.message) listener({ data: JSON.stringify(frame) });
  }

  /** The connection ends with `code`/`reason` (as seen by the client). */
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    for (const listener of this.listeners.close) listener({ code, reason });
  }

  /** Frames written of `type`. */
  frames(type) {
    return this.sent.filter((frame) => frame.type === type);
  }

  /** Waits until a frame matching `predicate` was written, and returns it. */
  async waitFor(predicate, timeout = 5000) {
    const until = Date.now() + timeout;
    for (;;) {
      const found = this.sent.find(predicate);
      if (found) return found;
      if (Date.now() > until) throw new Error(`no such frame; sent: ${JSON.stringify(this.sent)}`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
}

/** A stored message of `room` as the server sends it. */
export function msg(room, seq, extra = {}) {
  return {
    type: "message",
    room,
    seq,
    id: extra.id ?? `id-${room}-${seq}`,
    from: extra.from ?? "bob",
    avatar: null,
    text: extra.text ?? `text ${seq}`,
    ts: "2026-01-01T00:00:00.000Z",
    ...extra,
  };
}

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client on FakeSocket (reset first) as user "alice", with short timers. */
export function client(options = {}) {
  FakeSocket.reset();
  return new Client({
    url: "ws://server.test/ws",
    WebSocket: FakeSocket,
    user: "alice",
    reconnect: { initialDelay: 10, maxDelay: 40, jitter: 0 },
    frameRate: false,
    gapWait: 30,
    ...options,
  });
}
