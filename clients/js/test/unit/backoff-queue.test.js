// Backoff, the close-code rules, the bounded outbox and the frame pacer.
import test from "node:test";
import assert from "node:assert/strict";
import { Backoff, closeDecision, POLICY_PAUSE_MS } from "../../src/backoff.js";
import { Outbox, TokenBucket } from "../../src/queue.js";
import { RookeryError } from "../../src/errors.js";

test("backoff grows exponentially to its cap, jittered within [1 - jitter, 1] of each step", () => {
  const top = new Backoff({ initialDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5, random: () => 0 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => top.next()), [100, 200, 400, 800, 1000, 1000]);
  const bottom = new Backoff({ initialDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => bottom.next()), [50, 100, 200, 400, 500]);
  const real = new Backoff({ initialDelay: 1000, jitter: 0.5 });
  const delays = Array.from({ length: 200 }, () => {
    real.reset();
    return real.next();
  });
  assert.ok(delays.every((d) => d >= 500 && d <= 1000), "within the jitter band");
  assert.ok(new Set(delays).size > 50, "spread out, so clients dropped together do not return together");
});

test("backoff resets after a working connection, and honours a floor the server asked for", () => {
  const b = new Backoff({ initialDelay: 100, jitter: 0, random: () => 0 });
  b.next();
  b.next();
  assert.equal(b.attempt, 2);
  b.reset();
  assert.equal(b.next(), 100);
  b.atLeast(5000);
  assert.equal(b.next(), 5000);
  assert.equal(b.next(), 400, "the floor applies once");
});

test("close codes: revoked, logged_out and replaced end the client; disconnected pauses; 1012 returns at once", () => {
  for (const reason of ["revoked", "logged_out", "replaced"]) {
    assert.deepEqual(closeDecision(1008, reason), { reconnect: false, why: reason });
  }
  assert.deepEqual(closeDecision(1008, "disconnected"), { reconnect: true, minDelay: POLICY_PAUSE_MS, soon: false });
  assert.deepEqual(closeDecision(1008, "over the frame rate limit"), { reconnect: true, minDelay: POLICY_PAUSE_MS, soon: false });
  assert.deepEqual(closeDecision(1012, "server is shutting down"), { reconnect: true, minDelay: 0, soon: true });
  for (const code of [1006, 1001, 1011, 1009, 1000]) {
    assert.deepEqual(closeDecision(code, ""), { reconnect: true, minDelay: 0, soon: false });
  }
});

test("the outbox is bounded: past its limit, add throws a queue_full RookeryError", () => {
  const box = new Outbox(2);
  box.add({ ref: "a" });
  box.add({ ref: "b" });
  assert.throws(() => box.add({ ref: "c" }), (error) => error instanceof RookeryError && error.code === "queue_full" && error.ref === "c");
  box.delete("a");
  box.add({ ref: "c" });
  assert.deepEqual(box.values().map((e) => e.ref), ["b", "c"], "oldest first");
  assert.deepEqual(box.drain().map((e) => e.ref), ["b", "c"]);
  assert.equal(box.size, 0);
});

test("the token bucket lets a burst through, then the rate", () => {
  let now = 0;
  const bucket = new TokenBucket(10, 3, () => now);
  assert.deepEqual([1, 2, 3, 4].map(() => bucket.take()), [true, true, true, false]);
  assert.equal(bucket.wait(), 100);
  now += 100;
  assert.equal(bucket.take(), true);
  assert.equal(bucket.take(), false);
  bucket.refill();
  assert.equal(bucket.take(), true);
  assert.equal(new TokenBucket(0, 1).take(), true, "rate 0: unlimited");
});
