// Ordering and de-duplication, without a server.
import test from "node:test";
import assert from "node:assert/strict";
import { Sequencer } from "../../src/sequencer.js";

const m = (seq, id = `id${seq}`) => ({ room: "r", seq, id, from: "u", avatar: null, text: `t${seq}`, ts: "" });
const seqs = (messages) => messages.map((message) => message.seq);

/** Pushes each and returns the seqs handed out, in order. */
function run(sequencer, messages) {
  return messages.flatMap((message) => seqs(sequencer.push(message)));
}

test("hands out messages in seq order whatever order they arrive in", () => {
  const s = new Sequencer();
  s.reset(0);
  assert.deepEqual(run(s, [m(3), m(1), m(4), m(2), m(5)]), [1, 2, 3, 4, 5]);
  assert.equal(s.last, 5);
  assert.equal(s.gap, null);
});

test("each message once: a repeated id or an already handed-out seq is dropped", () => {
  const s = new Sequencer();
  s.reset(0);
  assert.deepEqual(run(s, [m(1), m(2), m(1), m(2), m(3)]), [1, 2, 3]);
  // The same seq under another id (a replay of an id long forgotten) is still a duplicate.
  assert.deepEqual(run(s, [m(2, "other")]), []);
  // A held message repeated while it waits behind a gap.
  assert.deepEqual(run(s, [m(5), m(5), m(4)]), [4, 5]);
});

test("a gap holds later messages until it is filled, and reports itself", () => {
  const s = new Sequencer();
  s.reset(10);
  assert.deepEqual(run(s, [m(13), m(14)]), []);
  assert.deepEqual(s.gap, { from: 11, to: 12 });
  assert.equal(s.held, 2);
  assert.deepEqual(run(s, [m(12)]), []);
  assert.deepEqual(s.gap, { from: 11, to: 11 });
  assert.deepEqual(run(s, [m(11)]), [11, 12, 13, 14]);
  assert.equal(s.gap, null);
});

test("skipping a gap hands out what waited, and a skipped seq that turns up late is still delivered once", () => {
  const s = new Sequencer();
  s.reset(0);
  run(s, [m(1), m(3), m(4)]);
  assert.deepEqual(seqs(s.skipGap()), [3, 4]);
  assert.deepEqual(run(s, [m(2)]), [2]);
  assert.deepEqual(run(s, [m(2)]), []);
});

test("fast messages: out at once, their stored copy is not handed out again and explains the gap", () => {
  const s = new Sequencer();
  s.reset(0);
  assert.deepEqual(run(s, [m(1)]), [1]);
  const fast = { ...m(null, "fast1"), seq: null };
  assert.deepEqual(s.push(fast).map((x) => x.id), ["fast1"]);
  assert.deepEqual(run(s, [m(3)]), []);
  assert.equal(s.fastExplainsGap, true);
  assert.deepEqual(seqs(s.skipGap()), [3]);
  // The stored copy (seq 2, same id) arrives from a replay: nothing new.
  assert.deepEqual(run(s, [m(2, "fast1")]), []);
  assert.deepEqual(run(s, [m(4)]), [4]);
});

test("the stored copy of a fast message fills its place in the order", () => {
  const s = new Sequencer();
  s.reset(1);
  s.push({ ...m(null, "f"), seq: null });
  assert.deepEqual(run(s, [m(3)]), []);
  assert.deepEqual(run(s, [m(2, "f")]), [3]);
  assert.equal(s.last, 3);
});

test("an unknown start is set by the first message; reset drops what was held", () => {
  const s = new Sequencer();
  assert.equal(s.known, false);
  assert.deepEqual(run(s, [m(7), m(8)]), [7, 8]);
  assert.equal(s.known, true);
  run(s, [m(10)]);
  assert.equal(s.held, 1);
  s.reset(8);
  assert.equal(s.held, 0);
  assert.deepEqual(run(s, [m(9), m(10)]), [9, 10]);
});

test("remembered messages (a join's history) are never handed out", () => {
  const s = new Sequencer();
  s.reset(2);
  s.remember([m(1), m(2)]);
  assert.deepEqual(run(s, [m(2), m(3)]), [3]);
});

test("loose rooms (not joined) never hold, and older unseen messages still come through", () => {
  const s = new Sequencer({ loose: true });
  assert.deepEqual(run(s, [m(5), m(9), m(7), m(9), m(6)]), [5, 9, 7, 6]);
});

test("memory is bounded: held messages past maxHeld skip the gap, seen ids past maxSeen are forgotten", () => {
  const s = new Sequencer({ maxHeld: 3, maxSeen: 4 });
  s.reset(0);
  assert.deepEqual(run(s, [m(2), m(3), m(4)]), []);
  assert.deepEqual(run(s, [m(5)]), [2, 3, 4, 5]);
  run(s, [m(6), m(7)]);
  assert.equal(s.hasSeen("id2"), false, "the oldest id was forgotten");
  assert.equal(s.hasSeen("id7"), true);
  // Still a duplicate by seq.
  assert.deepEqual(run(s, [m(2)]), []);
});
