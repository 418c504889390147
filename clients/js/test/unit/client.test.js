// The client's protocol logic against a scripted socket: reconnect and
// resume, retries, ordering and de-duplication across connections, the
// stale state, close codes, the inbox, the queue bound.
import test from "node:test";
import assert from "node:assert/strict";
import { Client, RookeryError } from "../../src/index.js";
import { FakeSocket, client, msg, sleep } from "../support/fake-socket.js";

const ROOM = "general";

/** A connected client joined to ROOM whose history ends at `last`. */
async function joined(last = 0, options = {}) {
  const c = client(options);
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  const joining = c.join(ROOM);
  const join = await socket.waitFor((f) => f.type === "join");
  assert.equal(join.room, ROOM);
  const history = [];
  for (let seq = Math.max(1, last - 2); seq <= last; seq++) history.push(msg(ROOM, seq));
  socket.feed({ type: "joined", room: ROOM, history, online: ["alice"], read: [] });
  const room = await joining;
  const seen = [];
  room.on("message", (m) => seen.push(m.seq));
  await sleep(2); // messages right after a join are handed out a moment later
  return { c, socket, room, seen };
}

test("send resolves with {seq, id} once acked, whichever of ack and message comes first", async () => {
  const { c, socket, room } = await joined(0);
  const first = room.send("one");
  const frame = await socket.waitFor((f) => f.type === "send" && f.text === "one");
  assert.equal(frame.room, ROOM);
  assert.equal(frame.retry, undefined);
  socket.feed({ type: "ack", ref: frame.ref, room: ROOM, seq: 1 });
  socket.feed(msg(ROOM, 1, { id: "aaa", text: "one", from: "alice" }));
  assert.deepEqual(await first, { ref: frame.ref, room: ROOM, seq: 1, id: "aaa" });

  const second = room.send("two");
  const frame2 = await socket.waitFor((f) => f.type === "send" && f.text === "two");
  socket.feed(msg(ROOM, 2, { id: "bbb", text: "two", from: "alice" }));
  socket.feed({ type: "ack", ref: frame2.ref, room: ROOM, seq: 2 });
  assert.deepEqual(await second, { ref: frame2.ref, room: ROOM, seq: 2, id: "bbb" });
  c.close();
});

test("a refusal rejects the send with a RookeryError carrying the protocol's code", async () => {
  const { c, socket, room } = await joined(0);
  const sending = room.send("   ");
  const frame = await socket.waitFor((f) => f.type === "send");
  socket.feed({ type: "error", code: "empty_text", message: "message text is empty", ref: frame.ref });
  await assert.rejects(sending, (error) => error instanceof RookeryError && error.code === "empty_text" && error.room === ROOM);
  c.close();
});

test("a ref the server could not echo (over 128 bytes) is refused at once, not left waiting", async () => {
  const { c, socket, room } = await joined(0);
  await assert.rejects(room.send("x", { ref: "r".repeat(200) }), (e) => e instanceof RookeryError && e.code === "invalid_frame");
  assert.equal(socket.frames("send").length, 0);
  assert.equal(c.queued, 0);
  c.close();
});

test("after a drop: reconnect, resume each room from its last seq, retry unacked sends with retry:true", async () => {
  const { c, socket, room, seen } = await joined(5);
  socket.feed(msg(ROOM, 6));
  const sending = room.send("lost ack");
  const frame = await socket.waitFor((f) => f.type === "send");
  const reconnecting = c.once("reconnecting");
  socket.drop(1006, "");
  const { delay } = await reconnecting;
  assert.equal(delay, 10, "the first backoff step");
  assert.equal(c.state, "reconnecting");
  const second = await FakeSocket.nth(1);
  second.open();
  const resume = await second.waitFor((f) => f.type === "resume");
  assert.deepEqual(resume.rooms, { [ROOM]: 6 });
  const retry = await second.waitFor((f) => f.type === "send");
  assert.equal(retry.ref, frame.ref, "the same ref");
  assert.equal(retry.retry, true);
  assert.equal(retry.text, "lost ack");
  // The replay overlaps what was shown; the stored retry is acked under its seq.
  second.feed({ type: "joined", room: ROOM, recovered: true, online: [], read: [],
    history: [msg(ROOM, 6), msg(ROOM, 7, { id: "mine", from: "alice", text: "lost ack" })] });
  second.feed({ type: "ack", ref: frame.ref, room: ROOM, seq: 7 });
  assert.deepEqual(await sending, { ref: frame.ref, room: ROOM, seq: 7, id: "mine" });
  second.feed(msg(ROOM, 7, { id: "mine" }));
  second.feed(msg(ROOM, 8));
  assert.deepEqual(seen, [6, 7, 8], "each once, in order");
  c.close();
});

test("messages across a replay and live frames come out once and in order", async () => {
  const { c, socket, seen } = await joined(0);
  socket.feed(msg(ROOM, 1));
  socket.feed(msg(ROOM, 3)); // ahead of 2: held
  assert.deepEqual(seen, [1]);
  socket.feed(msg(ROOM, 2));
  assert.deepEqual(seen, [1, 2, 3]);
  socket.drop(1006);
  const second = await FakeSocket.nth(1);
  second.open();
  await second.waitFor((f) => f.type === "resume");
  second.feed(msg(ROOM, 5)); // live, before the replay's answer
  second.feed({ type: "joined", room: ROOM, recovered: true, online: [], read: [], history: [msg(ROOM, 3), msg(ROOM, 4)] });
  second.feed(msg(ROOM, 5));
  second.feed(msg(ROOM, 6));
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
  c.close();
});

test("messages racing a fresh join: none lost to a listener added after `await join()`, none repeating its history", async () => {
  const c = client();
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  const joining = c.join(ROOM);
  await socket.waitFor((f) => f.type === "join");
  socket.feed(msg(ROOM, 2)); // before the answer (an inbox fetch, say): in the history too
  socket.feed({ type: "joined", room: ROOM, history: [msg(ROOM, 1), msg(ROOM, 2)], online: [], read: [] });
  socket.feed(msg(ROOM, 3)); // in the same chunk as the answer
  const room = await joining;
  const seen = [];
  room.on("message", (m) => seen.push(m.seq));
  await sleep(5);
  assert.deepEqual(room.latest.map((m) => m.seq), [1, 2]);
  assert.deepEqual(seen, [3]);
  c.close();
});

test("a gap that does not close by itself is filled from history", async () => {
  const { c, socket, seen } = await joined(1);
  socket.feed(msg(ROOM, 2));
  socket.feed(msg(ROOM, 4));
  assert.deepEqual(seen, [2]);
  const history = await socket.waitFor((f) => f.type === "history");
  assert.equal(history.before, 4);
  assert.equal(history.limit, 1);
  socket.feed({ type: "history", room: ROOM, messages: [msg(ROOM, 3)] });
  await sleep(5);
  assert.deepEqual(seen, [2, 3, 4]);
  c.close();
});

test("recovered:false makes the room stale: nothing is delivered until the app reloads it", async () => {
  const { c, socket, room, seen } = await joined(3);
  socket.drop(1006);
  const second = await FakeSocket.nth(1);
  second.open();
  await second.waitFor((f) => f.type === "resume");
  const stale = room.once("stale");
  const clientStale = c.once("stale");
  second.feed({ type: "joined", room: ROOM, recovered: false, online: [], read: [],
    history: [msg(ROOM, 600), msg(ROOM, 601)] });
  assert.equal(room.state, "stale");
  const info = await stale;
  assert.deepEqual(info, { room: ROOM, lastSeen: 3, firstReplayed: 600, missed: 596 });
  assert.deepEqual(await clientStale, info);
  second.feed(msg(ROOM, 602));
  assert.deepEqual(seen, [], "held while stale");
  assert.equal(room.lastSeq, 3, "what the application was given");
  const snapshot = await room.reload();
  assert.deepEqual(snapshot.map((m) => m.seq), [600, 601, 602]);
  assert.equal(room.state, "live");
  assert.equal(room.lastSeq, 602);
  second.feed(msg(ROOM, 603));
  assert.deepEqual(seen, [603]);
  c.close();
});

test("catchUp() fetches the hole from history and delivers everything in order", async () => {
  const { c, socket, room, seen } = await joined(3);
  socket.drop(1006);
  const second = await FakeSocket.nth(1);
  second.open();
  await second.waitFor((f) => f.type === "resume");
  second.feed({ type: "joined", room: ROOM, recovered: false, online: [], read: [],
    history: [msg(ROOM, 7), msg(ROOM, 8)] });
  second.feed(msg(ROOM, 9));
  const catching = room.catchUp();
  const page = await second.waitFor((f) => f.type === "history");
  assert.equal(page.before, 7);
  second.feed({ type: "history", room: ROOM, messages: [msg(ROOM, 3), msg(ROOM, 4), msg(ROOM, 5), msg(ROOM, 6)] });
  assert.equal(await catching, 6);
  assert.deepEqual(seen, [4, 5, 6, 7, 8, 9]);
  assert.equal(room.state, "live");
  c.close();
});

test("revoked: no reconnect, and waiting sends reject with closed and the reason", async () => {
  const { c, socket, room } = await joined(0);
  const sending = room.send("never");
  await socket.waitFor((f) => f.type === "send");
  const closed = c.once("close");
  socket.drop(1008, "revoked");
  assert.deepEqual(await closed, { code: 1008, reason: "revoked" });
  await assert.rejects(sending, (e) => e.code === "closed" && e.closeCode === 1008 && e.closeReason === "revoked");
  assert.equal(c.state, "closed");
  await sleep(60);
  assert.equal(FakeSocket.made.length, 1, "no new connection");
});

test("disconnected by the backend: come back only after a pause; 1012: come back at once", async () => {
  const { c, socket } = await joined(0);
  const paused = c.once("reconnecting");
  socket.drop(1008, "disconnected");
  assert.ok((await paused).delay >= 5000);
  c.close();

  const again = await joined(0);
  const soon = again.c.once("reconnecting");
  again.socket.drop(1012, "server is shutting down");
  assert.ok((await soon).delay <= 150);
  again.c.close();
});

test("the reconnect frame: acks are awaited, then the client moves to another connection and resumes", async () => {
  const { c, socket, room } = await joined(2);
  const sending = room.send("in flight");
  const frame = await socket.waitFor((f) => f.type === "send");
  socket.feed({ type: "reconnect" });
  await sleep(20);
  assert.equal(socket.closedWith, null, "waits for the ack");
  socket.feed({ type: "ack", ref: frame.ref, room: ROOM, seq: 3 });
  socket.feed(msg(ROOM, 3, { id: "x" }));
  await sending;
  const second = await FakeSocket.nth(1, 1000);
  assert.ok(socket.closedWith, "the old connection was closed");
  second.open();
  const resume = await second.waitFor((f) => f.type === "resume");
  assert.deepEqual(resume.rooms, { [ROOM]: 3 });
  c.close();
});

test("a connection that answers no ping is given up for a new one", async () => {
  const { c, socket } = await joined(0, { pingAfter: 30, pongTimeout: 30 });
  await socket.waitFor((f) => f.type === "ping", 3000);
  const second = await FakeSocket.nth(1, 4000);
  assert.equal(socket.closedWith.code, 4000);
  second.open();
  await second.waitFor((f) => f.type === "resume" || f.type === "join");
  c.close();
});

test("the outgoing queue is bounded: past maxQueue, send rejects with queue_full", async () => {
  const c = client({ maxQueue: 2 });
  const room = { name: ROOM };
  void room;
  const joining = c.join(ROOM);
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  socket.feed({ type: "joined", room: ROOM, history: [], online: [], read: [] });
  const r = await joining;
  socket.drop(1006); // offline: sends wait
  const a = r.send("a");
  const b = r.send("b");
  await assert.rejects(r.send("c"), (e) => e instanceof RookeryError && e.code === "queue_full");
  assert.equal(c.queued, 2);
  const second = await FakeSocket.nth(1);
  second.open();
  const sent = await second.waitFor((f) => f.type === "send" && f.text === "b");
  assert.ok(second.sent.some((f) => f.type === "send" && f.text === "a"));
  second.feed({ type: "joined", room: ROOM, recovered: true, history: [], online: [], read: [] });
  const refA = second.sent.find((f) => f.text === "a").ref;
  second.feed({ type: "ack", ref: refA, room: ROOM, seq: 1 });
  second.feed(msg(ROOM, 1, { id: "A" }));
  second.feed({ type: "ack", ref: sent.ref, room: ROOM, seq: 2 });
  second.feed(msg(ROOM, 2, { id: "B" }));
  assert.equal((await a).id, "A");
  assert.equal((await b).id, "B");
  assert.equal(c.queued, 0);
  c.close();
});

test("store_uncertain: the send is retried with retry:true and resolves with the stored seq", async () => {
  const { c, socket, room } = await joined(0);
  const sending = room.send("maybe");
  const frame = await socket.waitFor((f) => f.type === "send");
  socket.feed({ type: "error", code: "store_uncertain", message: "not known", ref: frame.ref });
  const retry = await socket.waitFor((f) => f.type === "send" && f.retry === true, 3000);
  assert.equal(retry.ref, frame.ref);
  socket.feed({ type: "ack", ref: frame.ref, room: ROOM, seq: 1 });
  socket.feed(msg(ROOM, 1, { id: "stored" }));
  assert.equal((await sending).id, "stored");
  c.close();
});

test("the offline inbox is fetched by itself and handed out in order", async () => {
  const c = client();
  const seen = [];
  c.on("message", (m) => seen.push(`${m.room}#${m.seq}`));
  const inbox = c.once("inbox");
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  socket.feed({ type: "pending", count: 2 });
  const fetch = await socket.waitFor((f) => f.type === "fetch_missed");
  assert.equal(fetch.limit, 100);
  const dm = "@alice:bob";
  socket.feed(msg(dm, 5)); // live, overtaking the fetch
  socket.feed(msg(dm, 3));
  socket.feed(msg(dm, 4));
  socket.feed({ type: "fetch_missed_complete", left: 0 });
  assert.deepEqual(await inbox, { count: 2, from: ["bob"] });
  assert.deepEqual(seen, [`${dm}#3`, `${dm}#4`, `${dm}#5`]);
  socket.feed(msg(dm, 5));
  socket.feed(msg(dm, 6));
  assert.deepEqual(seen.slice(3), [`${dm}#6`], "once");
  c.close();
});

test("group: one outcome per recipient, refusals that name nobody go to the recipient left", async () => {
  const c = client();
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.open();
  await connecting;
  const sending = c.group(["carol", "bob", "bob"], "hi all");
  const frame = await socket.waitFor((f) => f.type === "group");
  assert.deepEqual(frame.to, ["bob", "carol"]);
  assert.equal(frame.confirm, true);
  socket.feed({ type: "ack", ref: frame.ref, room: "@alice:bob", seq: 4 });
  socket.feed(msg("@alice:bob", 4, { id: "tobob", from: "alice" }));
  socket.feed({ type: "error", code: "forbidden", message: "not allowed", ref: frame.ref });
  const outcomes = await sending;
  assert.deepEqual(outcomes[0], { to: "bob", ok: true, sent: { ref: frame.ref, room: "@alice:bob", seq: 4, id: "tobob" } });
  assert.equal(outcomes[1].to, "carol");
  assert.equal(outcomes[1].ok, false);
  assert.equal(outcomes[1].error.code, "forbidden");
  assert.equal(outcomes[1].error.to, "carol");
  c.close();
});

test("connect() rejects with connect_failed when the first connection fails", async () => {
  const c = client();
  const connecting = c.connect();
  const socket = await FakeSocket.nth(0);
  socket.drop(1006, "");
  await assert.rejects(connecting, (e) => e.code === "connect_failed");
  assert.equal(c.state, "closed");
});

test("the cookie is passed as a header (Node); the URL gets /ws when given as http", async () => {
  FakeSocket.reset();
  const c = new Client({ url: "http://server.test:8080", cookie: "rookery_session=abc", WebSocket: FakeSocket });
  c.connect().catch(() => {});
  const socket = await FakeSocket.nth(0);
  assert.equal(socket.url, "ws://server.test:8080/ws");
  assert.deepEqual(socket.options, { headers: { cookie: "rookery_session=abc" } });
  c.close();
});
