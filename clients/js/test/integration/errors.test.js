// Every refusal code the SDK can provoke from a real replica rejects the
// operation with a RookeryError carrying that code: text checks, rooms,
// users, the message budget, the authorization webhook, and the store
// (a MongoDB-protocol server the test freezes and kills).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { RookeryError } from "../../src/index.js";
import {
  SKIP, closeClients, newUser, sleep, startMongo, startReplica, stored, until, userClient,
} from "../support/servers.js";

/** Asserts `promise` rejects with a RookeryError of `code` (and the given fields). */
async function refused(promise, code, fields = {}) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof RookeryError, `a RookeryError, not ${error}`);
    assert.equal(error.code, code, error.message);
    for (const [key, value] of Object.entries(fields)) assert.equal(error[key], value, key);
    return true;
  });
}

describe("refusals", { skip: SKIP, timeout: 120_000 }, () => {
  let replica;
  let hook;
  const denied = newUser("denied");
  before(async () => {
    // The authorization webhook: "secret" is refused, "hookdown" finds the hook down.
    hook = http.createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        const asked = JSON.parse(body);
        if (asked.room === "hookdown") {
          response.writeHead(500).end();
          return;
        }
        const allowed = asked.room !== "secret" && asked.to !== denied;
        response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ allowed }));
      });
    });
    await new Promise((resolve) => hook.listen(0, "127.0.0.1", resolve));
    replica = await startReplica({
      env: {
        AUTHORIZE_WEBHOOK_URL: `http://127.0.0.1:${hook.address().port}/authorize`,
        USER_RATE_LIMIT: "1",
        USER_RATE_BURST: "3",
      },
    });
  });
  after(async () => {
    closeClients();
    await replica?.kill();
    await new Promise((resolve) => hook?.close(resolve));
  });

  test("text, room and user refusals", async () => {
    await userClient(replica.url, denied); // exists, but the hook refuses messages to it
    const client = await userClient(replica.url, newUser("e"));
    await client.connect();
    const room = await client.join(`errors-${newUser()}`);
    await refused(room.send(" \u200b "), "empty_text", { room: room.name });
    await refused(room.send("x".repeat(4001)), "text_too_long", { room: room.name });
    await refused(client.join("not a room!"), "invalid_room", { room: "not a room!" });
    await refused(client.join("@someone:else"), "invalid_room", { room: "@someone:else" });
    await refused(client.direct("bad name!", "hi"), "invalid_user", { to: "bad name!" });
    await refused(client.direct("nobody-at-all", "hi"), "unknown_user", { to: "nobody-at-all" });
    await refused(client.group([], "hi"), "invalid_frame");
    await refused(client.group(["fine", "bad name!"], "hi"), "invalid_user");
    const other = await client.join(`left-${newUser()}`);
    await other.leave();
    await refused(other.send("into a room left"), "not_joined", { room: other.name });
    assert.equal(other.state, "left");
    // The connection is fine after all that.
    assert.equal((await room.send("still here")).seq, 1);
  });

  test("the authorization webhook: forbidden, and authorization_unavailable when it is down", async () => {
    const client = await userClient(replica.url, newUser("h"));
    await client.connect();
    await refused(client.join("secret"), "forbidden", { room: "secret" });
    await refused(client.join("hookdown"), "authorization_unavailable", { room: "hookdown" });
    await refused(client.direct(denied, "hi"), "forbidden", { to: denied });
    // In a group only that recipient is refused; the others get theirs.
    const friend = newUser("friend");
    await userClient(replica.url, friend);
    const outcomes = await client.group([friend, denied], "to both");
    const byName = Object.fromEntries(outcomes.map((o) => [o.to, o]));
    assert.equal(byName[friend].ok, true);
    assert.equal(byName[friend].sent.room, [client.user, friend].sort().reduce((a, b) => `@${a}:${b}`));
    assert.equal(byName[denied].ok, false);
    assert.equal(byName[denied].error.code, "forbidden");
    // And joining a room the hook allows still works.
    assert.equal((await client.join(`open-${newUser()}`)).state, "live");
  });

  test("rate_limited: past the user's message budget a send is refused (not stored)", async () => {
    const client = await userClient(replica.url, newUser("flood"));
    await client.connect();
    const room = await client.join(`flood-${newUser()}`);
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => room.send(`burst ${i}`)));
    const limited = results.filter((r) => r.status === "rejected");
    assert.ok(results.filter((r) => r.status === "fulfilled").length >= 3, "the burst goes through");
    assert.ok(limited.length >= 3, "the rest is refused");
    for (const r of limited) {
      assert.ok(r.reason instanceof RookeryError);
      assert.equal(r.reason.code, "rate_limited");
    }
    const texts = (await stored(replica.api, room.name)).map((m) => m.text);
    assert.equal(texts.length, results.length - limited.length, "refused ones were not stored");
  });
});

describe("store refusals (a database frozen, then gone)", { skip: SKIP, timeout: 120_000 }, () => {
  let mongo;
  let replica;
  before(async () => {
    mongo = await startMongo({ own: true });
    replica = await startReplica({ env: { MONGO_URL: mongo.url, STORE_QUEUE: "1" } });
  });
  after(async () => {
    closeClients();
    mongo?.signal("SIGCONT");
    await replica?.kill();
    await mongo?.kill();
  });

  test("a store_uncertain send is retried (retry:true) and stored once; overloaded, store_uncertain with retries off, store_unavailable", async () => {
    const patient = await userClient(replica.url, newUser("pa"));
    const strict = await userClient(replica.url, newUser("st"), { sendRetries: 0 });
    await patient.connect();
    await strict.connect();
    const name = `store-${newUser()}`;
    const same = await patient.join(name);
    const room = await strict.join(name);
    assert.equal((await same.send("before")).seq, 1);

    // The SDK's default: a store_uncertain send is retried with retry:true
    // until the answer is known. The original lands once the database wakes
    // up; the retry must find it instead of storing a second copy.
    mongo.signal("SIGSTOP");
    const retried = same.send("uncertain, then known");
    await sleep(5500); // the 5 s bound passes: uncertain; the SDK retries after a pause
    mongo.signal("SIGCONT");
    const sent = await retried;
    await sleep(500);
    const copies = (await stored(replica.api, name)).filter((m) => m.text === "uncertain, then known");
    assert.equal(copies.length, 1, "stored once");
    assert.equal(copies[0].seq, sent.seq);
    assert.equal(copies[0].id, sent.id);

    // With retries off, the codes themselves.
    mongo.signal("SIGSTOP");
    const frozen = room.send("frozen");
    await sleep(200);
    // STORE_QUEUE=1: one message already waits for the frozen store.
    await refused(room.send("one too many"), "overloaded");
    await refused(frozen, "store_uncertain");
    mongo.signal("SIGCONT");

    await mongo.kill();
    await refused(room.send("gone"), "store_unavailable");
  });
});
