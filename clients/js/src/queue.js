// The outgoing side: a bounded queue of what waits for the server's answer
// (sends not yet acked, kept across reconnects and retried), and a token
// bucket that paces frames under the server's per-connection frame rate.

import { RookeryError } from "./errors.js";

/**
 * @template {{ ref: string }} Entry
 */
export class Outbox {
  /** @type {Map<string, Entry>} */
  #entries = new Map();

  /** @param {number} limit at most this many entries wait at once */
  constructor(limit) {
    this.limit = limit;
  }

  get size() {
    return this.#entries.size;
  }

  /**
   * Adds an entry, or throws `queue_full` when `limit` entries wait already.
   * @param {Entry} entry
   */
  add(entry) {
    if (this.#entries.size >= this.limit) {
      throw new RookeryError(
        "queue_full",
        `the outgoing queue is full: ${this.limit} messages are waiting for the server ` +
          "(not connected, or sending faster than it answers); wait for some to be acked",
        { ref: entry.ref },
      );
    }
    this.#entries.set(entry.ref, entry);
  }

  /** @param {string} ref */
  get(ref) {
    return this.#entries.get(ref);
  }

  /** @param {string} ref */
  delete(ref) {
    return this.#entries.delete(ref);
  }

  /** Every waiting entry, oldest first (the order they go out again after a reconnect). */
  values() {
    return [...this.#entries.values()];
  }

  /** Empties the queue, returning what was in it. */
  drain() {
    const all = this.values();
    this.#entries.clear();
    return all;
  }
}

/** Frames per second on average, with bursts up to `burst`. */
export class TokenBucket {
  #tokens;
  #at;

  /**
   * @param {number} rate tokens per second (0: unlimited)
   * @param {number} burst
   * @param {() => number} [now]
   */
  constructor(rate, burst, now = Date.now) {
    this.rate = rate;
    this.burst = Math.max(1, burst);
    this.now = now;
    this.#tokens = this.burst;
    this.#at = now();
  }

  #refill() {
    const now = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
  }

  /** Takes a token if there is one. */
  take() {
    if (this.rate <= 0) return true;
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Milliseconds until a token is there. */
  wait() {
    if (this.rate <= 0) return 0;
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) / this.rate) * 1000);
  }

  /** A new connection: the server's bucket for it starts full. */
  refill() {
    this.#tokens = this.burst;
    this.#at = this.now();
  }
}
