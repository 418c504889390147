// The HTTP side: login/logout helpers, and the server API wrapper against
// the server's own OpenAPI document.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { API_OPERATIONS, Client, RookeryError, ServerApi, login, logout } from "../../src/index.js";
import { API_KEY, PASSWORD, SKIP, closeClients, newUser, until, startReplica, userClient } from "../support/servers.js";

describe("HTTP: login and the server API", { skip: SKIP, timeout: 60_000 }, () => {
  let replica;
  before(async () => {
    replica = await startReplica();
  });
  after(async () => {
    closeClients();
    await replica?.kill();
  });

  test("login returns the session cookie for Node; refusals are typed", async () => {
    const name = newUser("log");
    const first = await login({ url: replica.url, name, password: PASSWORD, action: "register" });
    assert.equal(first.user, name);
    assert.match(first.cookie, /^rookery_session=./);
    const again = await login({ url: `${replica.url.replace("http", "ws")}/ws`, name, password: PASSWORD, action: "login" });
    assert.match(again.cookie, /^rookery_session=./);
    await assert.rejects(login({ url: replica.url, name, password: "wrong password 1" }),
      (e) => e instanceof RookeryError && e.code === "unauthorized" && e.status === 401 && /wrong password/i.test(e.message));
    await assert.rejects(login({ url: replica.url, name, password: PASSWORD, action: "register" }),
      (e) => e.code === "conflict" && e.status === 409);
    await assert.rejects(login({ url: replica.url, name: newUser("nobody"), password: PASSWORD, action: "login" }),
      (e) => e.code === "unauthorized" && /no account/i.test(e.message));

    // The cookie opens a WebSocket; after logout it is closed with logged_out and the client stops.
    const client = new Client({ url: replica.url, cookie: again.cookie });
    await client.connect();
    const closed = client.once("close");
    await logout({ url: replica.url, cookie: again.cookie });
    assert.deepEqual(await closed, { code: 1008, reason: "logged_out" });
    assert.equal(client.state, "closed");
  });

  test("the wrapper covers every operation of the OpenAPI document", async () => {
    const api = new ServerApi({ url: replica.url, apiKey: API_KEY });
    const document = await api.openapi();
    const operations = Object.values(document.paths).flatMap((path) => Object.values(path).map((op) => op.operationId));
    assert.deepEqual([...API_OPERATIONS].sort(), operations.sort());
    for (const operation of operations) assert.equal(typeof api[operation], "function", operation);
  });

  test("server API calls, as a backend makes them, reach connected clients", async () => {
    const api = new ServerApi({ url: replica.url, apiKey: API_KEY });
    const user = newUser("api");
    const client = await userClient(replica.url, user);
    await client.connect();
    const roomName = `api-${newUser()}`;
    const room = await client.join(roomName);
    const seen = [];
    room.on("message", (m) => seen.push(m));

    const published = await api.publish(roomName, { system: "deploys", text: "4.2 is live" }, { idempotencyKey: "deploy-42" });
    assert.equal(published.seq, 1);
    const repeated = await api.publish(roomName, { system: "deploys", text: "4.2 is live" }, { idempotencyKey: "deploy-42" });
    assert.deepEqual(repeated, published, "an idempotent retry stores once");
    const broadcast = await api.broadcast({ rooms: [roomName, `other-${newUser()}`], system: "ops", text: "maintenance" });
    assert.equal(broadcast.results.length, 2);
    assert.equal(broadcast.results[0].seq, 2);
    await until(() => seen.length === 2, "the client to get both");
    assert.deepEqual(seen.map((m) => [m.seq, m.from]), [[1, "system:deploys"], [2, "system:ops"]]);

    const page = await api.history(roomName, { before: 3, limit: 1 });
    assert.deepEqual(page.messages.map((m) => m.seq), [2]);
    assert.equal(page.more, true);
    assert.deepEqual((await api.presence(roomName)).online, [user]);
    const connections = await api.connections(user);
    assert.equal(connections.connections.length, 1);
    assert.deepEqual(connections.connections[0].rooms, [roomName]);

    const dm = client.once("message");
    const sender = newUser("support");
    await userClient(replica.url, sender);
    const direct = await api.direct(user, { from: sender, text: "your order shipped" });
    assert.equal((await dm).id, direct.id);

    const reconnecting = client.once("reconnecting");
    const disconnected = await api.disconnect(user, { reason: "disconnected" });
    assert.equal(disconnected.everywhere, true);
    assert.equal((await reconnecting).reason, "disconnected");
    client.close();
  });

  test("server API refusals are typed with the body's code and the status", async () => {
    const api = new ServerApi({ url: replica.url, apiKey: API_KEY });
    await assert.rejects(new ServerApi({ url: replica.url, apiKey: "not-the-key-0000000" }).presence("general"),
      (e) => e instanceof RookeryError && e.code === "unauthorized" && e.status === 401);
    await assert.rejects(api.direct("nobody-here", { from: "nobody-either", text: "x" }),
      (e) => e.status === 404 && e.code === "unknown_user");
    await assert.rejects(api.publish("general", { system: "x", text: "   " }),
      (e) => e.status === 400 && e.code === "empty_text");
    await assert.rejects(api.history("bad room!"), (e) => e.status === 400);
  });
});
