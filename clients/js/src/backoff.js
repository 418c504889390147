// When to reconnect: jittered exponential backoff, and what the server's
// close codes say about coming back (docs/PROTOCOL.md, "Closing codes").

/**
 * Jittered exponential backoff. The n-th delay (from 0) is
 * `min(max, initial * factor^n)` scaled by a random factor in
 * `[1 - jitter, 1]`, so clients dropped together do not return together.
 */
export class Backoff {
  /** @type {number} */ #attempt = 0;
  /** @type {number} */ #floor = 0;

  /**
   * @param {{ initialDelay?: number, maxDelay?: number, factor?: number,
   *           jitter?: number, random?: () => number }} [options]
   */
  constructor(options = {}) {
    this.initialDelay = options.initialDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 10_000;
    this.factor = options.factor ?? 2;
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
    this.random = options.random ?? Math.random;
  }

  /** How many delays were handed out since the last reset. */
  get attempt() {
    return this.#attempt;
  }

  /** The next delay in milliseconds. */
  next() {
    const base = Math.min(this.maxDelay, this.initialDelay * this.factor ** this.#attempt);
    this.#attempt += 1;
    const delay = base * (1 - this.jitter * this.random());
    const floor = this.#floor;
    this.#floor = 0;
    return Math.round(Math.max(delay, floor));
  }

  /**
   * Makes the next delay at least `ms` (a server asked for a pause).
   * @param {number} ms
   */
  atLeast(ms) {
    this.#floor = Math.max(this.#floor, ms);
  }

  /** After a connection that worked: start again from the initial delay. */
  reset() {
    this.#attempt = 0;
  }
}

/**
 * @typedef {{ reconnect: false, why: "revoked" | "logged_out" | "replaced" | "closed" }
 *         | { reconnect: true, minDelay: number, soon: boolean }} CloseDecision
 */

/** A pause the server asks for after closing us for the backend (`disconnected`) or for flooding. */
export const POLICY_PAUSE_MS = 5_000;

/**
 * What a close by the server means for reconnecting.
 * @param {number} code
 * @param {string} reason
 * @returns {CloseDecision}
 */
export function closeDecision(code, reason) {
  if (code === 1008) {
    switch (reason) {
      // The backend or the validity hook said the user may not come back.
      case "revoked":
      // This login ended (logged out anywhere, expired): log in again.
      case "logged_out":
      // SINGLE_SESSION: a newer connection of the user took over.
      case "replaced":
        return { reconnect: false, why: reason };
      // The backend closed us but allows a return, after a pause; and a
      // client closed for flooding must slow down.
      default:
        return { reconnect: true, minDelay: POLICY_PAUSE_MS, soon: false };
    }
  }
  // The replica is restarting (after `reconnect`): go to another one now.
  if (code === 1012) return { reconnect: true, minDelay: 0, soon: true };
  // Anything else (1006 cut, 1011, a proxy's 1001...): back off and return.
  return { reconnect: true, minDelay: 0, soon: false };
}
