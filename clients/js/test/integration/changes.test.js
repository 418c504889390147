// Edits and deletes against real replicas: live across two replicas
// joined by Redis, in a resume's replay (a client cut off while they were
// made), interleaved with messages without holding them back, a fresh join
// whose newest seqs are edits, a replay cut at 500 events with catchUp over
// history pages whose holes are changes, retries after a lost ack, and the
// refusals (not_found, forbidden, ...).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RookeryError } from "../../src/index.js";
import {
  BINARY, PASSWORD, SKIP, closeClients, newUser, sleep, startCluster, startProxy, startReplica, stored, until, userClient,
} from "../support/servers.js";

const FAST_RECONNECT = { initialDelay: 50, maxDelay: 200 };

/** Every frame the client writes, parsed (a WebSocket that records what it sends). */
function recordingSocket() {
  const sent = [];
  class Recording extends WebSocket {
    send(data) {
      sent.push(JSON.parse(String(data)));
      super.send(data);
    }
  }
  return { sent, WebSocket: Recording };
}

/** Records a room's events as "m<seq>", "e<seq>", "d<seq>", and keeps them. */
function record(room) {
  const log = [];
  const events = [];
  const gaps = [];
  room.on("message", (m) => {
    log.push(`m${m.seq}`);
    events.push(m);
  });
  room.on("edit", (e) => {
    log.push(`e${e.seq}`);
    events.push(e);
  });
  room.on("delete", (d) => {
    log.push(`d${d.seq}`);
    events.push(d);
  });
  room.on("gap", (g) => gaps.push(g));
  return { log, events, gaps };
}

/** Asserts `promise` rejects with a RookeryError of `code`. */
async function refused(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof RookeryError, `a RookeryError, not ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

describe("edits and deletes across two replicas", { skip: SKIP, timeout: 180_000 }, () => {
  let cluster;
  let proxy;
  before(async () => {
    cluster = await startCluster(2);
    proxy = await startProxy(cluster.replicas[1].url);
  });
  after(async () => {
    closeClients();
    await proxy?.close();
    await cluster?.stop();
  });

  test("an edit and a delete made on one replica reach a client of the other live, in seq order with the messages", async () => {
    const [r0, r1] = cluster.replicas;
    const name = `live-${newUser()}`;
    const alice = await userClient(r0.url, newUser("alice"));
    const bob = await userClient(r1.url, newUser("bob"));
    await alice.connect();
    await bob.connect();
    const ra = await alice.join(name);
    const rb = await bob.join(name);
    const atBob = record(rb);
    const clientEdits = [];
    bob.on("edit", (e) => clientEdits.push(e));
    await until(() => ra.online.includes(bob.user), "bob in alice's presence");

    const one = await ra.send("one");
    const two = await ra.send("two");
    const edited = await ra.edit(one.id, "one, fixed");
    const three = await ra.send("three");
    const deleted = await ra.delete(two.id);
    assert.deepEqual([one.seq, two.seq, edited.seq, three.seq, deleted.seq], [1, 2, 3, 4, 5], "each change takes the next seq");
    assert.equal(edited.room, name);

    await until(() => atBob.log.length === 5, "bob to see all five events");
    assert.deepEqual(atBob.log, ["m1", "m2", "e3", "m4", "d5"]);
    const [, , edit, , del] = atBob.events;
    assert.deepEqual({ ...edit, ts: "" }, { type: "edit", room: name, seq: 3, id: one.id, from: alice.user, text: "one, fixed", ts: "" });
    assert.match(edit.ts, RFC3339);
    assert.deepEqual({ ...del, ts: "" }, { type: "delete", room: name, seq: 5, id: two.id, from: alice.user, ts: "" });
    assert.equal(rb.lastSeq, 5, "the delete advanced lastSeq");
    assert.equal(clientEdits.length, 1, "the client sees every room's edits too");
    assert.deepEqual(atBob.gaps, []);
    assert.match(one.id, /^[0-9a-f]{16,20}$/);

    // Read back (history, a fresh join): messages as they are now, the seqs of changes skipped.
    const pages = [];
    for await (const page of rb.history()) pages.push(...page);
    assert.deepEqual(pages.map((m) => [m.seq, m.text, Boolean(m.edited), m.deleted ?? false]),
      [[1, "one, fixed", true, false], [2, undefined, false, true], [4, "three", false, false]]);
    assert.ok(!("text" in pages[1]), "a deleted message has no text");
    const carol = await userClient(r1.url, newUser("carol"));
    await carol.connect();
    const rc = await carol.join(name);
    assert.deepEqual(rc.latest.map((m) => m.seq), [1, 2, 4]);
    assert.equal(rc.latest[0].edited, edit.ts);
  });

  test("a client cut off while an edit and a delete were made gets them in its resume's replay, once, and resumes after them", async () => {
    const [r0] = cluster.replicas;
    const name = `replay-${newUser()}`;
    const alice = await userClient(r0.url, newUser("alice"));
    const bob = await userClient(r0.url, newUser("bob"), { url: proxy.url, reconnect: FAST_RECONNECT, connectTimeout: 1000 });
    await alice.connect();
    await bob.connect();
    const ra = await alice.join(name);
    const rb = await bob.join(name);
    const atBob = record(rb);
    const one = await ra.send("one");
    const two = await ra.send("two");
    const three = await ra.send("three");
    await until(() => atBob.log.length === 3, "the first three");

    proxy.refuse(true);
    proxy.cut();
    await until(() => bob.state === "reconnecting", "bob to notice the cut");
    const edited = await ra.edit(one.id, "one, fixed");
    const deleted = await ra.delete(two.id);
    const deletedToo = await ra.delete(three.id);
    proxy.refuse(false);
    await until(() => atBob.log.length === 6, "the replay's changes", 20_000);
    assert.deepEqual(atBob.log, ["m1", "m2", "m3", `e${edited.seq}`, `d${deleted.seq}`, `d${deletedToo.seq}`]);
    assert.equal(atBob.events[3].text, "one, fixed");
    assert.equal(atBob.events[4].id, two.id);
    assert.equal(rb.lastSeq, 6, "a resume ending with changes: lastSeq is the last change's");
    assert.equal(rb.state, "live");

    // Cut again with nothing new: the resume starts after the changes, which do not come twice.
    proxy.cut();
    await until(() => bob.state === "reconnecting", "the second cut");
    await until(() => bob.state === "open", "the second reconnect");
    await until(() => rb.joined, "resumed");
    await sleep(300);
    assert.equal(atBob.log.length, 6, "nothing handed out twice");
    const four = await ra.send("four");
    await until(() => atBob.log.length === 7, "live again");
    assert.equal(atBob.log[6], `m${four.seq}`);
    assert.deepEqual(atBob.gaps, []);
  });
});

describe("edits and deletes on one replica", { skip: SKIP, timeout: 180_000 }, () => {
  let replica;
  let proxy;
  const operator = newUser("op");
  const dataDir = mkdtempSync(join(tmpdir(), "rookery-sdk-changes-"));
  before(async () => {
    // An operator (ADMIN_USERS) must be an account the operator created.
    execFileSync(BINARY, ["create-user", operator], {
      env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, ROOKERY_PASSWORD: PASSWORD, RUST_LOG: "warn" },
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 30_000,
    });
    replica = await startReplica({ env: { ADMIN_USERS: operator, DATA_DIR: dataDir } });
    proxy = await startProxy(replica.url);
  });
  after(async () => {
    closeClients();
    await proxy?.close();
    await replica?.kill();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("messages interleaved with edits keep coming at once: no gap wait, no history read, no gap, no stale", async () => {
    const name = `interleaved-${newUser()}`;
    const alice = await userClient(replica.url, newUser("alice"), { frameRate: false });
    const bobSocket = recordingSocket();
    // A gap wait long enough that any message held behind an edit's seq shows.
    const bob = await userClient(replica.url, newUser("bob"), { WebSocket: bobSocket.WebSocket, gapWait: 5000 });
    await alice.connect();
    await bob.connect();
    const ra = await alice.join(name);
    const rb = await bob.join(name);
    const atBob = record(rb);
    const states = [];
    rb.on("state", (s) => states.push(s));
    const arrived = new Map();
    rb.on("message", (m) => arrived.set(m.id, Date.now()));

    let previous = null;
    let lastSeq = 0;
    const lags = [];
    for (let i = 1; i <= 20; i++) {
      const sent = await ra.send(`m${i}`);
      const at = Date.now();
      await until(() => arrived.has(sent.id), `message ${i} at bob`, 4000);
      lags.push(arrived.get(sent.id) - at);
      let last = sent.seq;
      if (previous) last = (await ra.edit(previous.id, `m${i - 1}, fixed`)).seq;
      if (i % 5 === 0) last = (await ra.delete(sent.id)).seq;
      previous = i % 5 === 0 ? null : sent;
      lastSeq = last;
    }
    const edits = 19 - 3; // none of a message deleted (5, 10, 15)
    await until(() => atBob.log.length === 20 + edits + 4, "every event at bob");
    const seqs = atBob.events.map((e) => e.seq);
    assert.deepEqual(seqs, Array.from({ length: lastSeq }, (_, i) => i + 1), "every seq once, in order");
    assert.ok(Math.max(...lags) < 2000, `no message waited behind an edit (lags ${lags.join(",")})`);
    assert.equal(atBob.events.filter((e) => e.type === "edit").length, edits);
    assert.equal(atBob.events.filter((e) => e.type === "delete").length, 4);
    assert.equal(rb.lastSeq, lastSeq);
    assert.deepEqual(atBob.gaps, []);
    assert.ok(!states.includes("stale"));
    assert.equal(bobSocket.sent.filter((f) => f.type === "history").length, 0, "no gap was read from history");

    // A newcomer whose join page ends with edits (the newest seqs): the next message is not held.
    const gone = new Set(atBob.events.filter((e) => e.type === "delete").map((e) => e.id));
    const survivor = atBob.events.findLast((e) => e.type !== "edit" && e.type !== "delete" && !gone.has(e.id));
    await ra.edit(survivor.id, "fixed again");
    await ra.edit(survivor.id, "last, fixed again");
    const carolSocket = recordingSocket();
    const carol = await userClient(replica.url, newUser("carol"), { WebSocket: carolSocket.WebSocket, gapWait: 5000 });
    await carol.connect();
    const rc = await carol.join(name);
    const atCarol = record(rc);
    assert.equal(rc.latest.find((m) => m.id === survivor.id).text, "last, fixed again", "the join's page shows the edit");
    const next = await ra.send("after the edits");
    const at = Date.now();
    await until(() => atCarol.log.length === 1, "the newcomer's first message", 4000);
    assert.ok(Date.now() - at < 2000, "not held behind the edits' seqs");
    assert.equal(atCarol.events[0].seq, next.seq);
    assert.equal(carolSocket.sent.filter((f) => f.type === "history").length, 0);
    assert.deepEqual(atCarol.gaps, []);
  });

  test("refusals: not_found, forbidden, empty_text, invalid_frame, not_joined; an operator deletes anyone's", async () => {
    const name = `refusals-${newUser()}`;
    const alice = await userClient(replica.url, newUser("alice"));
    const bob = await userClient(replica.url, newUser("bob"));
    const op = await userClient(replica.url, operator);
    for (const c of [alice, bob, op]) await c.connect();
    const ra = await alice.join(name);
    const rb = await bob.join(name);
    const ro = await op.join(name);
    const mine = await ra.send("alice's");
    const other = await ra.send("alice's too");

    await refused(ra.edit("0123456789abcdef0123", "no such message"), "not_found");
    await refused(ra.delete("0123456789abcdef0123"), "not_found");
    await refused(rb.edit(mine.id, "not bob's"), "forbidden");
    await refused(rb.delete(mine.id), "forbidden");
    await refused(ro.edit(mine.id, "operators may not edit"), "forbidden");
    await refused(ra.edit(mine.id, " \u200b "), "empty_text");
    await refused(ra.edit(mine.id, "x".repeat(4001)), "text_too_long");
    await refused(ra.edit("x".repeat(65), "too long an id"), "invalid_frame");
    const elsewhere = await alice.join(`left-${newUser()}`);
    await elsewhere.leave();
    await refused(elsewhere.edit(mine.id, "in a room left"), "not_joined");

    const byOperator = await ro.delete(other.id);
    assert.ok(byOperator.seq > other.seq);
    const gone = await ra.delete(mine.id);
    await refused(ra.edit(mine.id, "after the delete"), "not_found");
    await refused(ra.delete(mine.id), "not_found");
    const all = await stored(replica.api, name);
    assert.deepEqual(all.map((m) => [m.seq, m.deleted ?? false, m.text]), [[1, true, undefined], [2, true, undefined]]);
    assert.ok(gone.seq > byOperator.seq);
    // The connection is fine after all that.
    assert.ok((await ra.send("still here")).seq > gone.seq);
  });

  test("an edit and a delete whose acks were lost are retried after the reconnect and resolve with their seqs, made once", async () => {
    const name = `retry-${newUser()}`;
    const alice = await userClient(replica.url, newUser("alice"), { url: proxy.url, reconnect: FAST_RECONNECT, connectTimeout: 1000 });
    const bob = await userClient(replica.url, newUser("bob"));
    await alice.connect();
    await bob.connect();
    const ra = await alice.join(name);
    const rb = await bob.join(name);
    const atBob = record(rb);
    const one = await ra.send("one");
    const two = await ra.send("two");
    await until(() => atBob.log.length === 2, "bob to see both");

    proxy.mute(); // the server's answers stop reaching alice
    const editing = ra.edit(one.id, "one, fixed");
    const deleting = ra.delete(two.id);
    await until(() => atBob.log.length === 4, "both changes made (bob sees them)");
    proxy.cut();
    const edited = await editing;
    const deleted = await deleting;
    assert.deepEqual([edited.seq, deleted.seq], [3, 4]);
    await sleep(500);
    assert.deepEqual(atBob.log, ["m1", "m2", "e3", "d4"], "each made once");
    assert.equal(alice.queued, 0);
  });

  test("a replay cut at 500 events, half of them edits: stale, and catchUp pages over the holes and ends with every message as it is now", async () => {
    const name = `cut-${newUser()}`;
    const alice = await userClient(replica.url, newUser("alice"), { frameRate: false });
    const bobSocket = recordingSocket();
    const bob = await userClient(replica.url, newUser("bob"), {
      url: proxy.url, reconnect: FAST_RECONNECT, connectTimeout: 1000, WebSocket: bobSocket.WebSocket,
    });
    await alice.connect();
    await bob.connect();
    const ra = await alice.join(name);
    const rb = await bob.join(name);
    const atBob = record(rb);
    const first = await ra.send("before");
    await until(() => atBob.log.length === 1, "the first");
    proxy.refuse(true);
    proxy.cut();
    await until(() => bob.state === "reconnecting", "the cut");
    // 300 messages, each edited: 600 events, 100 more than a replay holds.
    const sends = [];
    for (let i = 1; i <= 300; i++) sends.push(ra.send(`m${i}`));
    const sent = await Promise.all(sends);
    await Promise.all(sent.map((s, i) => ra.edit(s.id, `m${i + 1}, fixed`)));
    await ra.edit(first.id, "before, fixed"); // in the hole: an edit of a message shown before it
    proxy.refuse(false);
    const info = await rb.once("stale");
    assert.equal(info.lastSeen, 1);
    // Seqs: 1 "before", 2..301 the messages, 302..601 their edits, 602 the edit of "before".
    assert.equal(info.firstReplayed, 602 - 500 + 1, "the replay holds the newest 500 events");
    assert.equal(info.missed, info.firstReplayed - 2);
    assert.deepEqual(atBob.log, ["m1"], "nothing while stale");
    const historyBefore = bobSocket.sent.filter((f) => f.type === "history").length;
    const handed = await rb.catchUp();
    const pages = bobSocket.sent.filter((f) => f.type === "history").length - historyBefore;
    assert.ok(pages <= 3, `catchUp read ${pages} pages`);
    const messages = atBob.events.filter((e) => e.type !== "edit" && e.type !== "delete");
    assert.deepEqual(messages.map((m) => m.seq), [1, ...sent.map((s) => s.seq)], "every message once, in order");
    assert.ok(messages.slice(1).every((m, i) => m.text === `m${i + 1}, fixed` && m.edited), "as they are now");
    const seqs = atBob.events.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in seq order");
    assert.equal(handed, atBob.events.length - 1);
    assert.equal(rb.state, "live");
    assert.equal(rb.lastSeq, 602);
    const after = await ra.send("live again");
    await until(() => atBob.log.at(-1) === `m${after.seq}`, "live again");
  });
});
