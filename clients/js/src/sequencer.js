// Ordering and de-duplication for one room: what the application is handed
// is each event once (a message by `id`, and by `seq` once stored; an edit
// or a delete by `seq`: its `id` is the message it changes), stored events
// in `seq` order. Every event of a room's stream takes a seq: a message, an
// edit, a delete. Pure logic, no timers and no I/O: the room asks for a gap
// to be filled (history) or passed over.

/** @typedef {import("../types/index.js").Message} Message */
/** @typedef {import("../types/index.js").Change} Change */
/** @typedef {Message | Change} Item */

/**
 * A held event, or `null`: a seq with nothing to hand out (a fast message
 * already handed out live whose stored copy holds it, or a change history
 * proved is not a message): in-order delivery just moves past it.
 * @typedef {Item | null} Held
 */

/**
 * An edit or a delete (not a message).
 * @param {Item} item
 * @returns {item is Change}
 */
export const isChange = (item) => item.type === "edit" || item.type === "delete";

/** The de-duplication key of a change: its seq (its `id` is its message's). */
const changeKey = (/** @type {number} */ seq) => `\u0000change:${seq}`;

export class Sequencer {
  /** Newest seq handed out in order (everything up to it is done). */
  #last = 0;
  /** Whether #last is known: a room first seen through a live message starts from it. */
  #known = false;
  /** id -> seq (null for a fast message seen before it was stored), and changes by seq; oldest first, bounded. */
  #seen = new Map();
  /** The seqs right after #last may be changes already shown (a join's page): the next event sets the order. */
  #open = false;
  /** Messages that arrived ahead of a gap: seq -> message. */
  #held = new Map();
  /** Seqs passed over (presumed fast messages stored after their live copy): delivered late if they ever come. */
  #skipped = new Set();
  /** Fast messages handed out live whose stored seq is still unknown. */
  #unsequencedFast = 0;

  /**
   * @param {{ maxSeen?: number, maxHeld?: number, loose?: boolean }} [options]
   *   `loose`: the room is not joined (a direct conversation seen live), so
   *   a gap cannot be filled: deliver at once, never hold.
   */
  constructor(options = {}) {
    this.maxSeen = options.maxSeen ?? 10_000;
    this.maxHeld = options.maxHeld ?? 10_000;
    this.loose = options.loose ?? false;
  }

  /** Newest seq handed out in order; 0 when none. */
  get last() {
    return this.#last;
  }

  /** Whether the resume point is known (a join answered, or a message seen). */
  get known() {
    return this.#known;
  }

  /** How many messages wait behind a gap. */
  get held() {
    return this.#held.size;
  }

  /** The missing seqs, `{from, to}` inclusive, or null when nothing waits. */
  get gap() {
    if (this.#held.size === 0) return null;
    const lowest = Math.min(...this.#held.keys());
    return { from: this.#last + 1, to: lowest - 1 };
  }

  /**
   * Whether `seq` is still to come: above what was handed out, not held.
   * @param {number} seq
   */
  awaits(seq) {
    return seq > this.#last && !this.#held.has(seq);
  }

  /** Whether fast messages seen live (stored under seqs we never saw) can account for the gap. */
  get fastExplainsGap() {
    const gap = this.gap;
    return gap !== null && this.#unsequencedFast >= gap.to - gap.from + 1;
  }

  /**
   * Continue in-order delivery after `seq` (0: from a room's first message);
   * `null`: unknown, the next message sets it. Held messages are dropped (a
   * reconnect replays them). `open`: `seq` is the newest message of a
   * join's page, which shows its messages as they are now: the seqs after
   * it may be edits and deletes already in them, so the first event above
   * `seq` continues the order wherever it is (what is at or below `seq` is
   * still a duplicate).
   * @param {number | null} seq
   * @param {{ open?: boolean }} [options]
   */
  reset(seq, options = {}) {
    this.#last = seq ?? 0;
    this.#known = seq !== null;
    this.#open = seq !== null && (options.open ?? false);
    this.#held.clear();
    this.#skipped.clear();
  }

  /**
   * Marks events as already shown without handing them out (a join's history).
   * @param {readonly Item[]} messages
   */
  remember(messages) {
    for (const message of messages) {
      if (isChange(message)) this.#note(changeKey(message.seq), message.seq);
      else this.#note(message.id, message.seq);
    }
  }

  /** @param {string} id */
  hasSeen(id) {
    return this.#seen.has(id);
  }

  /**
   * Takes one event from the server (a message live, replayed, fetched or
   * in a history page filling a gap; an edit or a delete, live or
   * replayed) and returns what can be handed out now, in order.
   * @param {Item} message
   * @returns {Item[]}
   */
  push(message) {
    if (isChange(message)) {
      // De-duplicated by seq alone; a change always has one.
      if (this.#seen.has(changeKey(message.seq))) return [];
      return this.#place(message.seq, message);
    }
    const seq = message.seq ?? null;
    if (this.#seen.has(message.id)) {
      if (seq !== null && this.#seen.get(message.id) === null) {
        // The stored copy of a fast message already handed out: its seq is
        // now known; move past it without handing it out again.
        this.#note(message.id, seq);
        this.#unsequencedFast = Math.max(0, this.#unsequencedFast - 1);
        return this.#place(seq, null);
      }
      return [];
    }
    if (seq === null) {
      // Fast, live, not stored yet: out at once, outside the seq order.
      this.#note(message.id, null);
      this.#unsequencedFast += 1;
      return [message];
    }
    return this.#place(seq, message);
  }

  /**
   * Passes over seqs that hold nothing to hand out: changes history showed
   * are not messages (a history page holds messages only). Unlike
   * `skipGap`, nothing turning up for them later is handed out.
   * @param {Iterable<number>} seqs
   * @returns {Item[]}
   */
  pass(seqs) {
    const out = /** @type {Item[]} */ ([]);
    for (const seq of seqs) out.push(...this.#place(seq, null));
    return out;
  }

  /**
   * Passes over the current gap: what waits behind it is handed out. For a
   * gap that fast messages account for, or one history could not fill.
   * @returns {Item[]}
   */
  skipGap() {
    const gap = this.gap;
    if (gap === null) return [];
    const size = gap.to - gap.from + 1;
    if (size <= 1000) for (let seq = gap.from; seq <= gap.to; seq++) this.#skipped.add(seq);
    this.#unsequencedFast = Math.max(0, this.#unsequencedFast - size);
    this.#last = gap.to;
    const out = /** @type {Item[]} */ ([]);
    this.#drain(out);
    return out;
  }

  /**
   * @param {number} seq
   * @param {Held} message
   * @returns {Item[]}
   */
  #place(seq, message) {
    if (!this.#known || (this.#open && seq > this.#last)) {
      this.#known = true;
      this.#open = false;
      this.#last = Math.max(this.#last, seq - 1);
    }
    if (seq <= this.#last) {
      // Already passed: a duplicate, unless it is one we passed over (late)
      // or the room is loose (an older message fetched after a newer one).
      if (message && (this.#skipped.delete(seq) || this.loose)) {
        this.#noteItem(message, seq);
        return [message];
      }
      return [];
    }
    if (this.#held.has(seq)) return [];
    if (seq === this.#last + 1 || this.loose) {
      if (this.loose && seq > this.#last + 1) {
        for (let s = this.#last + 1; s < seq && s - this.#last <= 1000; s++) this.#skipped.add(s);
      }
      this.#last = seq;
      const out = /** @type {Item[]} */ ([]);
      if (message) {
        this.#noteItem(message, seq);
        out.push(message);
      }
      this.#drain(out);
      return out;
    }
    this.#held.set(seq, message);
    if (this.#held.size > this.maxHeld) return this.skipGap();
    return [];
  }

  /** @param {Item[]} out */
  #drain(out) {
    while (this.#held.has(this.#last + 1)) {
      const next = /** @type {Held} */ (this.#held.get(this.#last + 1));
      this.#held.delete(this.#last + 1);
      this.#last += 1;
      if (next) {
        this.#noteItem(next, this.#last);
        out.push(next);
      }
    }
  }

  /**
   * @param {Item} item
   * @param {number} seq
   */
  #noteItem(item, seq) {
    if (isChange(item)) this.#note(changeKey(seq), seq);
    else this.#note(item.id, seq);
  }

  /**
   * @param {string} id
   * @param {number | null} seq
   */
  #note(id, seq) {
    this.#seen.delete(id);
    this.#seen.set(id, seq);
    if (this.#seen.size > this.maxSeen) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
  }
}
