// Edits and deletes against a scripted socket: each takes a seq of the
// room's stream, so they go through the same ordering as messages; a
// replay's `changes`; history pages (messages only) whose holes are edits
// and deletes, not missing messages; edit/delete calls, their refusals and
// their retries.
import test from "node:test";
import assert from "node:assert/strict";
import { RookeryError, Sequencer } from "../../src/index.js";
import { FakeSocket, client, msg, sleep } from "../support/fake-socket.js";

const ROOM = "general";
const TS = "2026-01-01T00:00:01.000Z";
const edit = (seq, id, text, from = "bob") => ({ type: "edit", room: ROOM, seq, id, from, text, ts: TS });
const del = (seq, id, from = "bob") => ({ type: "delete", room: ROOM, seq, id, from, ts: TS });

/** A connected client joined to ROOM whose join page is `history`; records every event as "kind:seq". */
async function joined(history, options = {}) {
  const c = client(options);
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  const joining = c.join(ROOM);
  await socket.waitFor((f) => f.type === "join");
  socket.feed({ type: "joined", room: ROOM, history, online: ["alice"], read: [] });
  const room = await joining;
  const seen = [];
  const events = [];
  room.on("message", (m) => {
    seen.push(`m${m.seq}`);
    events.push(m);
  });
  room.on("edit", (e) => {
    seen.push(`e${e.seq}`);
    events.push(e);
  });
  room.on("delete", (d) => {
    seen.push(`d${d.seq}`);
    events.push(d);
  });
  const gaps = [];
  room.on("gap", (g) => gaps.push(g));
  await sleep(2);
  return { c, socket, room, seen, events, gaps };
}

/** Drops the connection and returns the next socket, open, with its resume frame. */
async function reconnect(socket, n = 1) {
  socket.drop(1006);
  const next = await FakeSocket.nth(n);
  next.open();
  const resume = await next.waitFor((f) => f.type === "resume");
  return { next, resume };
}

test("edit and delete: the frames, and promises resolving with the change's own seq", async () => {
  const { c, socket, room } = await joined([msg(ROOM, 1, { id: "m1", from: "alice" })]);
  const editing = room.edit("m1", "fixed");
  const e = await socket.waitFor((f) => f.type === "edit");
  assert.deepEqual({ ...e, ref: undefined }, { type: "edit", room: ROOM, id: "m1", text: "fixed", ref: undefined });
  assert.equal(typeof e.ref, "string");
  assert.equal(e.retry, undefined);
  socket.feed({ type: "ack", ref: e.ref, room: ROOM, seq: 2 });
  assert.deepEqual(await editing, { seq: 2, room: ROOM, ref: e.ref });

  const deleting = room.delete("m1", { ref: "my-delete" });
  const d = await socket.waitFor((f) => f.type === "delete");
  assert.deepEqual(d, { type: "delete", room: ROOM, id: "m1", ref: "my-delete" });
  socket.feed({ type: "ack", ref: "my-delete", room: ROOM, seq: 3 });
  assert.deepEqual(await deleting, { seq: 3, room: ROOM, ref: "my-delete" });
  assert.equal(c.queued, 0);
  c.close();
});

test("refusals reject with a RookeryError of the protocol's code: not_found, forbidden, empty_text", async () => {
  const { c, socket, room } = await joined([msg(ROOM, 1, { id: "m1" })]);
  const cases = [
    [room.edit("nope", "x"), "not_found"],
    [room.delete("m1"), "forbidden"],
    [room.edit("m1", " "), "empty_text"],
  ];
  await sleep(5);
  const frames = socket.sent.filter((f) => f.type === "edit" || f.type === "delete");
  assert.equal(frames.length, 3);
  frames.forEach((frame, i) => socket.feed({ type: "error", code: cases[i][1], message: "refused", ref: frame.ref }));
  for (const [promise, code] of cases) {
    await assert.rejects(promise, (e) => e instanceof RookeryError && e.code === code && e.room === ROOM);
  }
  c.close();
});

test("live edits and deletes come in seq order with the messages and advance lastSeq; a resume starts after them", async () => {
  const { c, socket, room, seen, events, gaps } = await joined([msg(ROOM, 1, { id: "m1" })]);
  socket.feed(msg(ROOM, 2, { id: "m2" }));
  socket.feed(edit(3, "m1", "one, fixed"));
  socket.feed(msg(ROOM, 4, { id: "m4" }));
  socket.feed(del(5, "m2"));
  socket.feed(msg(ROOM, 6, { id: "m6" }));
  assert.deepEqual(seen, ["m2", "e3", "m4", "d5", "m6"], "no message held behind an edit's or a delete's seq");
  assert.deepEqual(events[1], edit(3, "m1", "one, fixed"));
  assert.deepEqual(events[3], del(5, "m2"));
  assert.equal(room.lastSeq, 6);
  socket.feed(edit(7, "m4", "four, fixed"));
  assert.equal(room.lastSeq, 7, "an edit alone advances lastSeq");
  // Again (a replayed or repeated frame): once.
  socket.feed(edit(7, "m4", "four, fixed"));
  socket.feed(del(5, "m2"));
  assert.deepEqual(seen, ["m2", "e3", "m4", "d5", "m6", "e7"]);
  await sleep(60);
  assert.equal(socket.frames("history").length, 0, "no gap was filled");
  assert.deepEqual(gaps, []);
  const { resume } = await reconnect(socket);
  assert.deepEqual(resume.rooms, { [ROOM]: 7 }, "the true last seq");
  c.close();
});

test("an edit ahead of a missing message waits for it like a message does", async () => {
  const { c, socket, seen } = await joined([msg(ROOM, 1, { id: "m1" })]);
  socket.feed(msg(ROOM, 2, { id: "m2" }));
  socket.feed(edit(4, "m3", "three, fixed"));
  assert.deepEqual(seen, ["m2"]);
  socket.feed(msg(ROOM, 3, { id: "m3" }));
  assert.deepEqual(seen, ["m2", "m3", "e4"]);
  c.close();
});

test("a join whose newest seqs are edits (shown in its page) does not hold the next live message", async () => {
  // Seqs 3 and 4 were edits of m1 and m2: the page shows them edited.
  const { c, socket, seen, gaps } = await joined([
    msg(ROOM, 1, { id: "m1", edited: TS, text: "new 1" }),
    msg(ROOM, 2, { id: "m2", edited: TS, text: "new 2" }),
  ]);
  socket.feed(msg(ROOM, 5, { id: "m5" }));
  assert.deepEqual(seen, ["m5"], "handed out at once");
  socket.feed(edit(6, "m5", "five, fixed"));
  socket.feed(msg(ROOM, 7, { id: "m7" }));
  assert.deepEqual(seen, ["m5", "e6", "m7"]);
  await sleep(60);
  assert.equal(socket.frames("history").length, 0);
  assert.deepEqual(gaps, []);
  c.close();
});

test("a resume's changes: in seq order with the replayed messages; changes to replayed messages are in them already", async () => {
  const { c, socket, room, seen, events } = await joined([msg(ROOM, 1, { id: "m1" }), msg(ROOM, 2, { id: "m2" })]);
  const { next, resume } = await reconnect(socket);
  assert.deepEqual(resume.rooms, { [ROOM]: 2 });
  // Missed: m3, edit of m1 (4), edit of m3 (5, shown in m3), delete of m2 (6), m7.
  next.feed({
    type: "joined", room: ROOM, recovered: true, online: [], read: [],
    history: [msg(ROOM, 3, { id: "m3", text: "three, fixed", edited: TS }), msg(ROOM, 7, { id: "m7" })],
    changes: [edit(4, "m1", "one, fixed"), edit(5, "m3", "three, fixed"), del(6, "m2")],
  });
  assert.deepEqual(seen, ["m3", "e4", "d6", "m7"]);
  assert.equal(events[0].edited, TS, "a message read back carries `edited` as the server sends it");
  assert.equal(room.lastSeq, 7);
  next.feed(msg(ROOM, 8, { id: "m8" }));
  assert.deepEqual(seen.at(-1), "m8");
  const again = await reconnect(next, 2);
  assert.deepEqual(again.resume.rooms, { [ROOM]: 8 });
  c.close();
});

test("an edit of a deleted message is not handed out (an edit racing the delete), nor one a replay erased", async () => {
  const { c, socket, seen } = await joined([msg(ROOM, 1, { id: "m1" }), msg(ROOM, 2, { id: "m2" })]);
  socket.feed(del(3, "m1"));
  socket.feed(edit(4, "m1", "too late"));
  socket.feed(msg(ROOM, 5, { id: "m5" }));
  assert.deepEqual(seen, ["d3", "m5"]);
  const { next } = await reconnect(socket);
  // Edited, then deleted while away: the edit's text is erased from the store.
  next.feed({
    type: "joined", room: ROOM, recovered: true, online: [], read: [], history: [],
    changes: [edit(6, "m2", ""), del(7, "m2")],
  });
  assert.deepEqual(seen, ["d3", "m5", "d7"]);
  c.close();
});

test("a gap history shows to be an edit never received is passed over at once and reported", async () => {
  const { c, socket, seen, gaps } = await joined([msg(ROOM, 1, { id: "m1" })]);
  socket.feed(msg(ROOM, 2, { id: "m2" }));
  socket.feed(msg(ROOM, 4, { id: "m4" })); // 3 never comes
  assert.deepEqual(seen, ["m2"]);
  const asked = await socket.waitFor((f) => f.type === "history");
  assert.equal(asked.before, 4);
  assert.equal(asked.limit, 1);
  // The newest message below 4 is 2: seq 3 is no message.
  socket.feed({ type: "history", room: ROOM, messages: [msg(ROOM, 2, { id: "m2" })] });
  await sleep(5);
  assert.deepEqual(seen, ["m2", "m4"]);
  assert.deepEqual(gaps, [{ room: ROOM, from: 3, to: 3 }]);
  assert.equal(socket.frames("history").length, 1, "one page decided it");
  c.close();
});

test("a gap of a message and an edit: the page fills the message and shows the edit's seq is none", async () => {
  const { c, socket, seen } = await joined([msg(ROOM, 1, { id: "m1" })]);
  socket.feed(msg(ROOM, 2, { id: "m2" }));
  socket.feed(msg(ROOM, 6, { id: "m6" }));
  const asked = await socket.waitFor((f) => f.type === "history");
  assert.deepEqual([asked.before, asked.limit], [6, 3]);
  // 3 and 5 are messages; 4 an edit.
  socket.feed({ type: "history", room: ROOM, messages: [msg(ROOM, 3, { id: "m3" }), msg(ROOM, 5, { id: "m5" })] });
  await sleep(5);
  assert.deepEqual(seen, ["m2", "m3", "m5", "m6"]);
  c.close();
});

test("a cut replay whose oldest event is a change: stale from there; catchUp pages over holes and ends", async () => {
  const { c, socket, room, seen } = await joined([msg(ROOM, 1, { id: "m1" }), msg(ROOM, 2, { id: "m2" })]);
  const { next } = await reconnect(socket);
  const stale = room.once("stale");
  next.feed({
    type: "joined", room: ROOM, recovered: false, online: [], read: [],
    history: [msg(ROOM, 9, { id: "m9" })],
    changes: [edit(8, "m1", "one, fixed")],
  });
  assert.deepEqual(await stale, { room: ROOM, lastSeen: 2, firstReplayed: 8, missed: 5 });
  next.feed(edit(10, "m9", "nine, fixed"));
  assert.deepEqual(seen, []);
  const catching = room.catchUp();
  const asked = await next.waitFor((f) => f.type === "history");
  assert.equal(asked.before, 8);
  // The hole 3..7 holds messages 4 and 6 (3, 5, 7 were changes): a short page, so the room's start.
  next.feed({ type: "history", room: ROOM, messages: [msg(ROOM, 1, { id: "m1" }), msg(ROOM, 2, { id: "m2" }), msg(ROOM, 4, { id: "m4" }), msg(ROOM, 6, { id: "m6", deleted: true, text: undefined })] });
  assert.equal(await catching, 5);
  assert.deepEqual(seen, ["m4", "m6", "e8", "m9", "e10"]);
  assert.equal(next.frames("history").length, 1, "one page");
  assert.equal(room.state, "live");
  assert.equal(room.lastSeq, 10);
  c.close();
});

test("reload() of a stale room hands back its messages with the changes held applied", async () => {
  const { c, socket, room, seen } = await joined([msg(ROOM, 1, { id: "m1" })]);
  const { next } = await reconnect(socket);
  next.feed({
    type: "joined", room: ROOM, recovered: false, online: [], read: [],
    history: [msg(ROOM, 700, { id: "a" }), msg(ROOM, 701, { id: "b" }), msg(ROOM, 702, { id: "c" })],
  });
  next.feed(edit(703, "a", "a, fixed"));
  next.feed(del(704, "b"));
  next.feed(edit(705, "m1", "not shown any more"));
  const fresh = await room.reload();
  assert.deepEqual(fresh.map((m) => [m.id, m.text, m.edited, m.deleted]), [
    ["a", "a, fixed", TS, undefined],
    ["b", undefined, undefined, true],
    ["c", "text 702", undefined, undefined],
  ]);
  assert.equal(room.lastSeq, 705);
  next.feed(msg(ROOM, 706, { id: "d" }));
  assert.deepEqual(seen, ["m706"]);
  c.close();
});

test("an edit and a delete unanswered when the connection broke go again with retry:true and their ref", async () => {
  const { c, socket, room } = await joined([msg(ROOM, 1, { id: "m1", from: "alice" }), msg(ROOM, 2, { id: "m2", from: "alice" })]);
  const editing = room.edit("m1", "fixed");
  const deleting = room.delete("m2");
  const e = await socket.waitFor((f) => f.type === "edit");
  const d = await socket.waitFor((f) => f.type === "delete");
  const { next } = await reconnect(socket);
  const e2 = await next.waitFor((f) => f.type === "edit");
  const d2 = await next.waitFor((f) => f.type === "delete");
  assert.deepEqual(e2, { ...e, retry: true });
  assert.deepEqual(d2, { ...d, retry: true });
  next.feed({ type: "joined", room: ROOM, recovered: true, online: [], read: [], history: [], changes: [edit(3, "m1", "fixed", "alice")] });
  next.feed({ type: "ack", ref: e.ref, room: ROOM, seq: 3 });
  next.feed({ type: "ack", ref: d.ref, room: ROOM, seq: 4 });
  assert.equal((await editing).seq, 3);
  assert.equal((await deleting).seq, 4);
  c.close();
});

test("a retried delete refused not_found because its original was stored resolves with that delete's seq", async () => {
  const { c, socket, room } = await joined([msg(ROOM, 1, { id: "m1", from: "alice" }), msg(ROOM, 2, { id: "m2", from: "alice" })]);
  const deleting = room.delete("m1");
  const lost = room.delete("m2");
  const d = await socket.waitFor((f) => f.type === "delete" && f.id === "m1");
  const l = await socket.waitFor((f) => f.type === "delete" && f.id === "m2");
  const { next } = await reconnect(socket);
  await next.waitFor((f) => f.type === "delete" && f.retry === true && f.id === "m2");
  // The refusals overtake the resume's answer.
  next.feed({ type: "error", code: "not_found", message: "no such message", ref: d.ref });
  next.feed({ type: "error", code: "not_found", message: "no such message", ref: l.ref });
  await sleep(5);
  next.feed({ type: "joined", room: ROOM, recovered: true, online: [], read: [], history: [], changes: [del(3, "m1", "alice")] });
  assert.deepEqual(await deleting, { seq: 3, room: ROOM, ref: d.ref });
  await assert.rejects(lost, (e) => e.code === "not_found", "m2 was not deleted by us: still refused");
  c.close();
});

test("an edit frame for a direct conversation not joined is handed out (client events too)", async () => {
  const c = client();
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  const dm = "@alice:bob";
  const seen = [];
  c.on("message", (m) => seen.push(`m${m.seq}`));
  c.on("edit", (e) => seen.push(`e${e.seq}:${e.text}`));
  c.on("delete", (d) => seen.push(`d${d.seq}`));
  socket.feed(msg(dm, 4, { id: "x" }));
  socket.feed({ ...edit(5, "x", "fixed"), room: dm });
  socket.feed({ ...del(6, "x"), room: dm });
  assert.deepEqual(seen, ["m4", "e5:fixed", "d6"]);
  assert.equal(c.room(dm).lastSeq, 6);
  c.close();
});

// ---- the sequencer alone ------------------------------------------------

const m = (seq, id = `id${seq}`) => ({ room: "r", seq, id, from: "u", avatar: null, text: `t${seq}`, ts: "" });
const ch = (seq, id) => ({ type: "edit", room: "r", seq, id, from: "u", text: "x", ts: "" });
const run = (s, items) => items.flatMap((item) => s.push(item).map((out) => `${out.type === "edit" ? "e" : "m"}${out.seq}`));

test("sequencer: changes take their place by seq and are de-duplicated by seq (their id is their message's)", () => {
  const s = new Sequencer();
  s.reset(0);
  assert.deepEqual(run(s, [m(1), ch(3, "id1"), m(2), ch(4, "id1"), ch(3, "id1"), m(5)]), ["m1", "m2", "e3", "e4", "m5"]);
  assert.equal(s.last, 5);
  // Two changes of one message are both handed out; the message itself is still seen once.
  assert.deepEqual(run(s, [ch(6, "id5"), ch(7, "id5"), m(5)]), ["e6", "e7"]);
});

test("sequencer: an open reset lets the first event above it set the order; what is below is still a duplicate", () => {
  const s = new Sequencer();
  s.reset(10, { open: true });
  s.remember([m(9), m(10)]);
  assert.deepEqual(run(s, [m(10), m(13), m(14)]), ["m13", "m14"]);
  assert.equal(s.gap, null);
  assert.deepEqual(run(s, [m(16)]), [], "only the first event: later gaps wait as before");
  assert.deepEqual(s.gap, { from: 15, to: 15 });
});

test("sequencer: pass() moves over seqs with nothing to hand out and releases what waited", () => {
  const s = new Sequencer();
  s.reset(1);
  assert.deepEqual(run(s, [m(4)]), []);
  assert.equal(s.awaits(2), true);
  assert.deepEqual(s.pass([2, 3]).map((x) => x.seq), [4]);
  assert.equal(s.awaits(3), false);
  // A change turning up late for a passed seq is not handed out.
  assert.deepEqual(run(s, [ch(3, "id1")]), []);
});
