// Real processes for the integration tests: Rookery replicas (the binary in
// ROOKERY_BIN), redis-server, SecantusDB (a MongoDB-protocol server; the
// one SDK_MONGO_URL points at, or one started here), and a TCP proxy that
// can cut, refuse and mute connections. Everything listens on 127.0.0.1 and
// is killed when the test file's process exits.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Client, login, ServerApi } from "../../src/index.js";

export const BINARY = process.env.ROOKERY_BIN;
export const API_KEY = "sdk-test-api-key-0123456789";
export const PASSWORD = "sdk-test-password-1";
/** Why the integration tests are skipped, or undefined when they run. */
export const SKIP = BINARY ? undefined : "ROOKERY_BIN is not set (scripts/sdk_test.sh sets it)";

/** @type {Set<import("node:child_process").ChildProcess>} */
const children = new Set();
/** @type {string[]} */
const scratch = [];
process.on("exit", () => {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(1));

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` is truthy (polling), or fails with `what`. */
export async function until(check, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), "rookery-sdk-"));
  scratch.push(dir);
  return dir;
}

/** A process that is killed at exit; its output is kept (the last 64 KiB). */
function launch(command, args, env) {
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let output = "";
  const keep = (chunk) => {
    output = (output + chunk.toString()).slice(-65536);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => {
    children.delete(child);
    resolve({ code, signal });
  }));
  return { child, exited, output: () => output };
}

async function waitForPort(port, what, exited) {
  let dead = false;
  exited.then(() => {
    dead = true;
  });
  await until(async () => {
    if (dead) throw new Error(`${what} exited during start-up`);
    return new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
  }, `${what} to listen on ${port}`, 30_000);
}

/**
 * A Rookery replica on a free port.
 * @param {{ node?: string, env?: Record<string, string> }} [options]
 */
export async function startReplica(options = {}) {
  const node = options.node ?? "solo";
  const proc = launch(BINARY, [], {
    PATH: process.env.PATH ?? "",
    HOST: "127.0.0.1",
    PORT: "0",
    WORKERS: "2",
    RUST_LOG: "warn",
    RATE_LIMIT: "0",
    USER_RATE_LIMIT: "0",
    LOGIN_ATTEMPTS_PER_MINUTE: "0",
    LOGIN_FAILURES_PER_MINUTE: "0",
    REGISTRATIONS_PER_HOUR: "0",
    SHUTDOWN_TIMEOUT: "2",
    NODE_ID: node,
    DATA_DIR: tempDir(),
    API_KEYS: API_KEY,
    ...options.env,
  });
  const address = await until(() => {
    if (proc.child.exitCode !== null) throw new Error(`replica ${node} exited: ${proc.output()}`);
    return /listening on http:\/\/([\d.]+:\d+)/.exec(proc.output())?.[1];
  }, `replica ${node} to start`, 30_000);
  const url = `http://${address}`;
  return {
    node,
    url,
    pid: proc.child.pid,
    log: proc.output,
    api: new ServerApi({ url, apiKey: API_KEY }),
    /** Sends `signal` and waits for the process to end. */
    async kill(signal = "SIGKILL") {
      if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
      return proc.exited;
    },
  };
}

/** A password-protected redis-server on a free port. */
export async function startRedis() {
  const port = await freePort();
  const proc = launch("redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--requirepass", "sdk-broker-secret", "--dir", tempDir(),
  ], { PATH: process.env.PATH ?? "" });
  await waitForPort(port, "redis-server", proc.exited);
  return {
    url: `redis://:sdk-broker-secret@127.0.0.1:${port}`,
    kill: () => {
      proc.child.kill("SIGKILL");
      return proc.exited;
    },
  };
}

/**
 * A MongoDB-protocol server. `own`: a process of this test (to stop or
 * freeze); otherwise the shared one of SDK_MONGO_URL when set.
 */
export async function startMongo({ own = false } = {}) {
  const database = `sdk_${randomBytes(4).toString("hex")}`;
  if (!own && process.env.SDK_MONGO_URL) {
    return { url: `${process.env.SDK_MONGO_URL.replace(/\/+$/, "")}/${database}`, pid: undefined, kill: async () => {} };
  }
  const secantusd = process.env.SECANTUSD ?? join(homedir(), ".cache/rookery/secantus/bin/secantusd-py");
  const port = await freePort();
  const proc = launch(secantusd, ["--host", "127.0.0.1", "--port", String(port), "--storage-path", tempDir()], {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? tmpdir(),
  });
  await waitForPort(port, "SecantusDB", proc.exited);
  return {
    url: `mongodb://127.0.0.1:${port}/${database}`,
    pid: proc.child.pid,
    /** @param {NodeJS.Signals} signal */
    signal: (signal) => proc.child.kill(signal),
    kill: () => {
      proc.child.kill("SIGKILL");
      return proc.exited;
    },
  };
}

/** `size` replicas sharing a Redis broker and a MongoDB database, broker links up. */
export async function startCluster(size, env = {}) {
  const redis = await startRedis();
  const mongo = await startMongo();
  const shared = { ADAPTER: "redis", REDIS_URL: redis.url, MONGO_URL: mongo.url, ...env };
  const replicas = [];
  for (let n = 0; n < size; n++) replicas.push(await startReplica({ node: `node${n}`, env: shared }));
  await Promise.all(replicas.map(waitConnected));
  return {
    redis,
    mongo,
    replicas,
    /** One more replica of the same cluster. */
    async add(node) {
      const replica = await startReplica({ node, env: shared });
      await waitConnected(replica);
      replicas.push(replica);
      return replica;
    },
    async stop() {
      for (const replica of replicas) await replica.kill();
      await redis.kill();
      await mongo.kill();
    },
  };
}

async function waitConnected(replica) {
  await until(async () => {
    try {
      const health = await (await fetch(`${replica.url}/healthz`)).json();
      return health.cluster?.connected === true;
    } catch {
      return false;
    }
  }, `${replica.node} to connect to its broker`);
}

let users = 0;
/** A fresh user name (no two tests share one). */
export const newUser = (prefix = "u") => `${prefix}${process.pid.toString(36)}x${(users++).toString(36)}`;

/**
 * A user registered on `at` and an SDK client for them (not connected yet).
 * @param {string} at a replica's URL (for the login)
 * @param {string} name
 * @param {Partial<import("../../types/index.js").ClientOptions>} [options] `url` defaults to `at`
 */
export async function userClient(at, name, options = {}) {
  const { cookie, user } = await login({ url: at, name, password: PASSWORD });
  const client = new Client({ url: at, cookie: cookie ?? undefined, user, ...options });
  clients.add(client);
  return client;
}

/** Every client made by userClient, closed by closeClients(). */
const clients = new Set();
export function closeClients() {
  for (const client of clients) client.close();
  clients.clear();
}

/**
 * A TCP proxy to `target` (`http://host:port`) that can cut every
 * connection, refuse new ones, and mute what the server sends.
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  let refusing = false;
  let muted = false;
  const server = net.createServer((downstream) => {
    if (refusing) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    const pair = { downstream, upstream };
    pairs.add(pair);
    const end = () => {
      downstream.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    downstream.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => {
      if (!muted) downstream.write(chunk);
    });
    downstream.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = /** @type {net.AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${own}`,
    get connections() {
      return pairs.size;
    },
    /** Cuts every open connection (the client sees 1006). */
    cut() {
      for (const { downstream, upstream } of pairs) {
        downstream.destroy();
        upstream.destroy();
      }
      pairs.clear();
      muted = false;
    },
    /** @param {boolean} on refuse new connections */
    refuse(on) {
      refusing = on;
    },
    /** From now on, drop what the server sends (acks never arrive). */
    mute() {
      muted = true;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Every message stored in `room`, oldest first (as they are now), read
 * through the server API. An `after` page is cut by events, messages and
 * changes alike, but holds messages only: it may hold none with more to come.
 */
export async function stored(api, room) {
  const all = [];
  let after = 0;
  for (;;) {
    let page;
    try {
      page = await api.history(room, { after, limit: 100 });
    } catch (error) {
      if (error.code === "not_found" || error.code === "unknown_room") return all;
      throw error;
    }
    all.push(...page.messages);
    if (!page.more) return all;
    // A page of nothing but edits and deletes: those 100 seqs hold no message.
    after = page.messages.length > 0 ? page.messages[page.messages.length - 1].seq : after + 100;
  }
}
