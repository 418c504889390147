// Against real replicas sharing a Redis broker and a MongoDB-protocol
// database: send/ack/receive across replicas, a replica restarting
// (`reconnect` frame) and a replica killed mid-stream, with the SDK moving
// its clients to the survivors.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { directRoom } from "../../src/index.js";
import { SKIP, closeClients, newUser, sleep, startCluster, stored, until, userClient } from "../support/servers.js";

describe("two replicas joined by Redis", { skip: SKIP, timeout: 180_000 }, () => {
  let cluster;
  before(async () => {
    cluster = await startCluster(2);
  });
  after(async () => {
    closeClients();
    await cluster?.stop();
  });

  const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  test("send, ack and receive across replicas: each send resolves with the seq and id the other side receives", async () => {
    const [r0, r1] = cluster.replicas;
    const room = `across-${newUser()}`;
    const alice = await userClient(r0.url, newUser("alice"));
    const bob = await userClient(r1.url, newUser("bob"));
    await alice.connect();
    await bob.connect();
    const ra = await alice.join(room);
    const rb = await bob.join(room);
    const atBob = [];
    const atAlice = [];
    rb.on("message", (m) => atBob.push(m));
    ra.on("message", (m) => atAlice.push(m));
    await until(() => ra.online.includes(bob.user), "bob in alice's presence");

    const sent = [];
    for (let i = 1; i <= 20; i++) sent.push(await ra.send(`hello ${i}`));
    assert.deepEqual(sent.map((s) => s.seq), range(1, 20));
    await until(() => atBob.length === 20, "bob to receive 20");
    assert.deepEqual(atBob.map((m) => [m.seq, m.id, m.text, m.from]), sent.map((s, i) => [s.seq, s.id, `hello ${i + 1}`, alice.user]));
    await until(() => atAlice.length === 20, "alice to receive her own 20");
    assert.deepEqual(atAlice.map((m) => m.id), sent.map((s) => s.id));

    // Typing and read positions cross replicas too.
    const typing = ra.once("typing");
    rb.typing(true);
    assert.deepEqual(await typing, { room, user: bob.user, active: true });
    const read = ra.once("read");
    rb.read();
    assert.deepEqual(await read, { room, user: bob.user, seq: 20 });
    assert.equal(ra.reads.get(bob.user), 20);

    // A direct message across replicas, with its delivered receipt.
    const dm = [];
    bob.on("message", (m) => m.room.startsWith("@") && dm.push(m));
    const receipt = alice.once("delivered");
    const direct = await alice.direct(bob.user, "psst");
    assert.equal(direct.room, directRoom(alice.user, bob.user));
    assert.deepEqual(await receipt, { ref: direct.ref, to: bob.user, room: direct.room, seq: direct.seq });
    await until(() => dm.length === 1, "bob to get the direct message");
    assert.equal(dm[0].id, direct.id);
  });

  test("a replica restarting (SIGTERM, `reconnect` frame) moves its clients: nothing lost, nothing twice", async () => {
    const [, r1] = cluster.replicas;
    const r2 = await cluster.add("node2");
    const room = `move-${newUser()}`;
    const sender = await userClient(r1.url, newUser("send"));
    const watcher = await userClient(r2.url, newUser("watch"), { url: [r2.url, r1.url] });
    const opened = [];
    watcher.on("open", ({ url }) => opened.push(url));
    const moves = [];
    watcher.on("reconnecting", (event) => moves.push(event));
    await sender.connect();
    await watcher.connect();
    const out = await sender.join(room);
    const into = await watcher.join(room);
    const seen = [];
    into.on("message", (m) => seen.push(m));
    const sends = [];
    for (let i = 1; i <= 60; i++) {
      sends.push(out.send(`m${i}`));
      if (i === 20) void r2.kill("SIGTERM");
      await sleep(25);
    }
    const sent = await Promise.all(sends);
    await until(() => seen.length >= 60, "every message at the watcher", 30_000);
    await sleep(300);
    assert.deepEqual(moves.map((m) => [m.code, m.reason]), [[1012, "moving to another replica"]],
      "left after the server's `reconnect` frame, once its sends were acked");
    assert.equal(opened.length, 2, "moved once");
    assert.equal(new URL(opened[0]).port, new URL(r2.url).port);
    assert.equal(new URL(opened[1]).port, new URL(r1.url).port, "to the live replica");
    assert.deepEqual(seen.map((m) => m.seq), range(1, 60), "once, in order");
    assert.deepEqual(seen.map((m) => m.id), sent.map((s) => s.id));
  });

  test("a replica killed mid-stream: its clients move to the survivor, receive every message once and in order, and their unacked sends are stored once", async () => {
    const [r0, r1] = cluster.replicas;
    const room = `kill-${newUser()}`;
    const reconnect = { initialDelay: 200, maxDelay: 1000 };
    // On the replica that will die: a reader and a writer.
    const carol = await userClient(r0.url, newUser("carol"), { url: [r0.url, r1.url], reconnect });
    const erin = await userClient(r0.url, newUser("erin"), { url: [r0.url, r1.url], reconnect });
    // On the survivor: another writer.
    const dave = await userClient(r1.url, newUser("dave"));
    for (const client of [carol, erin, dave]) await client.connect();
    const rc = await carol.join(room);
    const re = await erin.join(room);
    const rd = await dave.join(room);
    const seen = [];
    rc.on("message", (m) => seen.push(m));
    const carolOpened = [];
    carol.on("open", ({ url }) => carolOpened.push(new URL(url).port));

    const daveSends = [];
    const erinSends = [];
    let killed = null;
    for (let i = 1; i <= 120; i++) {
      daveSends.push(rd.send(`dave ${i}`));
      if (i <= 60) erinSends.push(re.send(`erin ${i}`));
      if (killed === null && seen.length >= 40) killed = r0.kill("SIGKILL");
      await sleep(15);
    }
    assert.ok(killed, "the replica was killed mid-stream");
    await killed;
    const daveSent = await Promise.all(daveSends);
    const erinSent = await Promise.all(erinSends);
    const expected = 180;
    await until(() => seen.length >= expected, `carol to have all ${expected} (has ${seen.length})`, 40_000);
    await sleep(500);

    // What the store holds is the truth: each send stored exactly once...
    const all = await stored(r1.api, room);
    const texts = all.map((m) => m.text).sort();
    const wanted = [...range(1, 120).map((i) => `dave ${i}`), ...range(1, 60).map((i) => `erin ${i}`)].sort();
    assert.deepEqual(texts, wanted, "every send stored once (retries included)");
    assert.deepEqual(all.map((m) => m.seq), range(1, expected));
    // ...every promise resolved with its stored seq and id...
    const byText = new Map(all.map((m) => [m.text, m]));
    for (const [i, s] of daveSent.entries()) assert.equal(s.id, byText.get(`dave ${i + 1}`).id);
    for (const [i, s] of erinSent.entries()) assert.equal(s.id, byText.get(`erin ${i + 1}`).id);
    // ...and carol, moved to the survivor, saw each message once, in order.
    assert.equal(carol.state, "open");
    assert.deepEqual(carolOpened, [new URL(r1.url).port], "carol moved to the survivor");
    assert.deepEqual(seen.map((m) => m.seq), range(1, expected), "once, in order");
    assert.deepEqual(seen.map((m) => m.id), all.map((m) => m.id));
  });
});
