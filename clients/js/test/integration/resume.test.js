// Against one real replica, behind a TCP proxy the test cuts: resume after
// a reconnect, the replay cut at 500 surfacing as the stale state, a send
// whose ack was lost retried and stored once, the offline inbox, and the
// server's close codes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  SKIP, closeClients, newUser, sleep, startProxy, startReplica, stored, until, userClient,
} from "../support/servers.js";

const FAST_RECONNECT = { initialDelay: 50, maxDelay: 200 };

describe("one replica", { skip: SKIP, timeout: 120_000 }, () => {
  let replica;
  let proxy;
  before(async () => {
    replica = await startReplica();
    proxy = await startProxy(replica.url);
  });
  after(async () => {
    closeClients();
    await proxy?.close();
    await replica?.kill();
  });

  /** A client connected through the proxy, joined to `room`, recording what it is handed. */
  async function viaProxy(roomName, options = {}) {
    const client = await userClient(replica.url, newUser("r"), { url: proxy.url, reconnect: FAST_RECONNECT, connectTimeout: 1000, ...options });
    await client.connect();
    const room = await client.join(roomName);
    const seen = [];
    room.on("message", (m) => seen.push(m));
    return { client, room, seen };
  }

  const publish = async (room, texts) => {
    for (const text of texts) await replica.api.publish(room, { system: "feed", text });
  };
  const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  test("a reconnect resumes: what was missed comes once, in order, then live messages", async () => {
    const room = `resume-${newUser()}`;
    const { client, seen } = await viaProxy(room);
    await publish(room, ["a", "b", "c"]);
    await until(() => seen.length === 3, "the first 3");
    proxy.refuse(true);
    proxy.cut();
    await until(() => client.state === "reconnecting", "the client to notice the cut");
    await publish(room, range(4, 53).map(String));
    proxy.refuse(false);
    await until(() => client.state === "open", "the reconnect");
    await publish(room, ["54"]);
    await until(() => seen.length >= 54, "every message", 20_000);
    await sleep(200);
    assert.deepEqual(seen.map((m) => m.seq), range(1, 54), "each seq once, in order");
    assert.equal(new Set(seen.map((m) => m.id)).size, 54, "no id twice");
    assert.equal(client.room(room).state, "live");
  });

  test("a replay cut at 500 makes the room stale: nothing more is delivered until catchUp(), which fills the hole", async () => {
    const name = `cut-${newUser()}`;
    const { client, room, seen } = await viaProxy(name);
    await publish(name, ["1", "2", "3"]);
    await until(() => seen.length === 3, "the first 3");
    const staleEvents = [];
    room.on("stale", (info) => staleEvents.push(info));
    proxy.refuse(true);
    proxy.cut();
    await until(() => client.state === "reconnecting", "the client to notice the cut");
    await publish(name, range(4, 603).map(String)); // 600 missed: 100 more than a replay holds
    proxy.refuse(false);
    await until(() => room.state === "stale", "the stale state");
    assert.deepEqual(staleEvents, [{ room: name, lastSeen: 3, firstReplayed: 104, missed: 100 }]);
    await publish(name, ["604", "605"]);
    await sleep(500);
    assert.equal(seen.length, 3, "nothing is handed out while the room is stale");
    const delivered = await room.catchUp();
    assert.equal(delivered, 602);
    assert.equal(room.state, "live");
    assert.deepEqual(seen.map((m) => m.seq), range(1, 605), "the hole, the replay and the live ones: once, in order");
    assert.deepEqual(seen.map((m) => m.text), range(1, 605).map(String));
    await publish(name, ["606"]);
    await until(() => seen.length === 606, "live again");
  });

  test("a stale room acknowledged with reload() hands back the newest messages and goes live", async () => {
    const name = `reload-${newUser()}`;
    const { client, room, seen } = await viaProxy(name);
    await publish(name, ["1"]);
    await until(() => seen.length === 1, "the first");
    proxy.refuse(true);
    proxy.cut();
    await until(() => client.state === "reconnecting", "the cut");
    await publish(name, range(2, 602).map(String));
    proxy.refuse(false);
    const info = await room.once("stale");
    assert.equal(info.missed, 101);
    const snapshot = await room.reload();
    assert.deepEqual(snapshot.map((m) => m.seq), range(103, 602), "the replay: the newest 500");
    assert.equal(seen.length, 1);
    await publish(name, ["603"]);
    await until(() => seen.length === 2, "the next live message");
    assert.equal(seen[1].seq, 603);
  });

  test("a send whose ack was lost is retried after the reconnect and stored once", async () => {
    const name = `retry-${newUser()}`;
    const { client, room, seen } = await viaProxy(name);
    proxy.mute(); // the server's answers stop reaching the client
    const text = `only once ${newUser()}`;
    const sending = room.send(text);
    await until(async () => (await stored(replica.api, name)).some((m) => m.text === text), "the original to be stored");
    proxy.cut();
    const sent = await sending;
    await sleep(300);
    const copies = (await stored(replica.api, name)).filter((m) => m.text === text);
    assert.equal(copies.length, 1, "stored once");
    assert.equal(sent.seq, copies[0].seq);
    assert.equal(sent.id, copies[0].id);
    assert.equal(seen.filter((m) => m.text === text).length, 1, "shown once");
    assert.equal(client.queued, 0);
  });

  test("sends made while offline wait in the queue, go out on reconnect; past maxQueue they are refused", async () => {
    const name = `queue-${newUser()}`;
    const { client, room, seen } = await viaProxy(name, { maxQueue: 3 });
    proxy.refuse(true);
    proxy.cut();
    await until(() => client.state === "reconnecting", "the cut");
    const waiting = ["q1", "q2", "q3"].map((text) => room.send(text));
    await assert.rejects(room.send("q4"), (e) => e.code === "queue_full");
    proxy.refuse(false);
    const sent = await Promise.all(waiting);
    assert.deepEqual(sent.map((s) => s.seq), [1, 2, 3]);
    await until(() => seen.length === 3, "the three");
    assert.deepEqual((await stored(replica.api, name)).map((m) => m.text), ["q1", "q2", "q3"]);
  });

  test("direct messages to someone offline: fetched on connect, in order, with delivered receipts to the sender", async () => {
    const bobName = newUser("bob");
    const bob = await userClient(replica.url, bobName);
    const alice = await userClient(replica.url, newUser("alice"));
    await alice.connect();
    const receipts = [];
    alice.on("delivered", (r) => receipts.push(r));
    const sent = [];
    for (const text of ["one", "two", "three"]) sent.push(await alice.direct(bobName, text));
    const got = [];
    bob.on("message", (m) => got.push(m));
    const inbox = bob.once("inbox");
    await bob.connect();
    assert.deepEqual(await inbox, { count: 3, from: [alice.user] });
    assert.deepEqual(got.map((m) => m.text), ["one", "two", "three"]);
    assert.deepEqual(got.map((m) => m.id), sent.map((s) => s.id));
    await until(() => receipts.length === 3, "three delivered receipts");
    assert.deepEqual(receipts.map((r) => r.ref).sort(), sent.map((s) => s.ref).sort());
    assert.ok(receipts.every((r) => r.to === bobName));
  });

  test("history pages back through the room, newest page first, each page oldest first", async () => {
    const name = `pages-${newUser()}`;
    await publish(name, range(1, 120).map(String));
    const { room } = await viaProxy(name);
    assert.deepEqual(room.latest.map((m) => m.seq), range(71, 120), "the join's latest 50");
    const pages = [];
    for await (const page of room.history({ before: 71, limit: 50 })) pages.push(page.map((m) => m.seq));
    assert.deepEqual(pages, [range(21, 70), range(1, 20)]);
    const newest = await room.history().next();
    assert.deepEqual(newest.value.map((m) => m.seq), range(71, 120));
  });

  test("fast messages come at once, those after them are not held, and a replay does not repeat them", async () => {
    const name = `fast-${newUser()}`;
    const sender = await viaProxy(name);
    const { client, seen } = await viaProxy(name);
    await sender.room.send("reliable 1");
    await sender.room.send("fast 2", { delivery: "fast" });
    const at = Date.now();
    await sender.room.send("reliable 3");
    await until(() => seen.length === 3, "all three");
    assert.ok(Date.now() - at < 500, "the message after a fast one is not held for a gap fill");
    assert.deepEqual(seen.map((m) => [m.text, m.seq]), [["reliable 1", 1], ["fast 2", null], ["reliable 3", 3]]);
    // A fast message last before a cut: the client's resume point is the
    // seq before it, so the replay holds its stored copy (same id, with a
    // seq): it is not handed out again.
    await sender.room.send("fast 4", { delivery: "fast" });
    await until(() => seen.length === 4, "the second fast one");
    await until(async () => (await stored(replica.api, name)).length === 4, "the fast one to be stored");
    proxy.refuse(true);
    proxy.cut();
    await until(() => client.state === "reconnecting", "the cut");
    await publish(name, ["5"]);
    proxy.refuse(false);
    await until(() => seen.length >= 5, "the missed one");
    await sleep(300);
    assert.deepEqual(seen.map((m) => m.text), ["reliable 1", "fast 2", "reliable 3", "fast 4", "5"]);
  });

  test("offline direct messages fetched while their conversation is being joined: in the join's history, not handed out again", async () => {
    const bobName = newUser("bob");
    const bob = await userClient(replica.url, bobName);
    const alice = await userClient(replica.url, newUser("alice"));
    await alice.connect();
    const sent = [];
    for (const text of ["a", "b", "c"]) sent.push(await alice.direct(bobName, text));
    const events = [];
    bob.on("message", (m) => events.push(m));
    const inbox = bob.once("inbox");
    const joining = bob.join(sent[0].room);
    await bob.connect();
    const room = await joining;
    assert.equal((await inbox).count, 3, "the inbox was fetched");
    await sleep(300);
    assert.deepEqual(room.latest.map((m) => m.id), sent.map((s) => s.id), "shown by the join");
    assert.deepEqual(events.map((m) => m.text), [], "and not a second time as messages");
    await alice.direct(bobName, "d");
    await until(() => events.length === 1, "the next one");
    assert.equal(events[0].text, "d");
  });

  test("closed by the backend: 'disconnected' pauses before returning; 'revoked' ends the client", async () => {
    const name = `close-${newUser()}`;
    const { client } = await viaProxy(name);
    const paused = client.once("reconnecting");
    await replica.api.disconnect(client.user, { reason: "disconnected" });
    const { code, reason, delay } = await paused;
    assert.equal(code, 1008);
    assert.equal(reason, "disconnected");
    assert.ok(delay >= 5000, `waits at least 5 s (${delay})`);
    client.close();

    const other = await viaProxy(name);
    await replica.api.disconnect(other.client.user, { reason: "revoked", refuse_seconds: 60 });
    await until(() => other.client.state === "closed", "the client to stop");
    await assert.rejects(other.room.send("after revoke"), (e) => e.code === "closed");
    await sleep(300);
    assert.equal(other.client.state, "closed", "no reconnect");
  });
});
