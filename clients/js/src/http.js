// HTTP: the login form (`POST /login`, a cookie back) and the server API
// (`/api/v1`, for backends holding an API key). Both use `fetch`.

import { RookeryError } from "./errors.js";

/** @typedef {import("../types/index.js").LoginOptions} LoginOptions */
/** @typedef {import("../types/index.js").LoginResult} LoginResult */

/**
 * The HTTP origin (and base path) of a server given as `http(s)://host` or `ws(s)://host/ws`.
 * @param {string} url
 */
export function httpBase(url) {
  const parsed = new URL(url, globalThis.location?.href);
  if (parsed.protocol === "ws:") parsed.protocol = "http:";
  if (parsed.protocol === "wss:") parsed.protocol = "https:";
  let path = parsed.pathname.replace(/\/+$/, "");
  if (path.endsWith("/ws")) path = path.slice(0, -3);
  return `${parsed.origin}${path}`;
}

/**
 * The WebSocket URL of a server given as `ws(s)://…` (kept) or `http(s)://host` (`/ws` added).
 * @param {string} url
 */
export function wsUrl(url) {
  const parsed = new URL(url, globalThis.location?.href);
  if (parsed.protocol === "ws:" || parsed.protocol === "wss:") return parsed.href;
  parsed.protocol = parsed.protocol === "https:" ? "wss:" : "ws:";
  const path = parsed.pathname.replace(/\/+$/, "");
  parsed.pathname = path.endsWith("/ws") ? path : `${path}/ws`;
  return parsed.href;
}

/** @param {number} status */
function codeOf(status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 404:
      return "not_found";
    case 409:
      return "conflict";
    case 413:
      return "body_too_large";
    case 429:
      return "rate_limited";
    case 503:
      return "unavailable";
    default:
      return "http_error";
  }
}

/** @param {Response} response */
function retryAfter(response) {
  const value = Number(response.headers.get("retry-after"));
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** @param {string} html the login page's `<p class="error">` text, unescaped */
function loginError(html) {
  const match = /<p class="error"[^>]*>([\s\S]*?)<\/p>/.exec(html);
  if (!match) return null;
  return match[1]
    .replace(/<[^>]*>/g, "")
    .replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&")
    .trim();
}

/**
 * @param {LoginOptions} options
 * @returns {Promise<LoginResult>}
 */
export async function login(options) {
  const doFetch = options.fetch ?? globalThis.fetch;
  const body = new URLSearchParams({ name: options.name });
  if (options.password !== undefined) body.set("password", options.password);
  if (options.token !== undefined) body.set("token", options.token);
  if (options.action !== undefined) body.set("action", options.action);
  const response = await doFetch(`${httpBase(options.url)}/login`, {
    method: "POST",
    body,
    redirect: "manual",
    credentials: "include",
  });
  // Success is a redirect to the chat; a browser hides it (opaqueredirect)
  // and keeps the HttpOnly cookie itself.
  if (response.status === 303 || response.type === "opaqueredirect") {
    const cookies = typeof response.headers.getSetCookie === "function"
      ? response.headers.getSetCookie()
      : [response.headers.get("set-cookie") ?? ""];
    const session = cookies.map((c) => c.split(";")[0].trim()).find((c) => c.startsWith("rookery_session="));
    return { user: options.name, cookie: session ?? null };
  }
  const text = await response.text().catch(() => "");
  const message = loginError(text) ?? `login failed: HTTP ${response.status}`;
  throw new RookeryError(codeOf(response.status), message, {
    status: response.status,
    retryAfter: retryAfter(response),
  });
}

/**
 * @param {{ url: string, cookie?: string, fetch?: typeof fetch }} options
 * @returns {Promise<void>}
 */
export async function logout(options) {
  const doFetch = options.fetch ?? globalThis.fetch;
  /** @type {Record<string, string>} */
  const headers = {};
  if (options.cookie) headers.cookie = options.cookie;
  const response = await doFetch(`${httpBase(options.url)}/logout`, {
    method: "POST",
    headers,
    redirect: "manual",
    credentials: "include",
  });
  if (response.status >= 400) {
    throw new RookeryError(codeOf(response.status), `logout failed: HTTP ${response.status}`, {
      status: response.status,
    });
  }
}

/** The operations of the server's OpenAPI document this wrapper covers, by operationId. */
export const API_OPERATIONS = Object.freeze([
  "publish",
  "direct",
  "broadcast",
  "history",
  "presence",
  "connections",
  "disconnect",
]);

/** @typedef {import("../types/index.js").api.PublishRequest} PublishRequest */
/** @typedef {import("../types/index.js").api.BroadcastRequest} BroadcastRequest */
/** @typedef {import("../types/index.js").api.DirectRequest} DirectRequest */
/** @typedef {import("../types/index.js").api.Published} Published */
/** @typedef {import("../types/index.js").api.BroadcastResult} BroadcastResult */
/** @typedef {import("../types/index.js").api.History} History */
/** @typedef {import("../types/index.js").api.HistoryQuery} HistoryQuery */
/** @typedef {import("../types/index.js").api.Presence} Presence */
/** @typedef {import("../types/index.js").api.Connections} Connections */
/** @typedef {import("../types/index.js").api.DisconnectRequest} DisconnectRequest */
/** @typedef {import("../types/index.js").api.Disconnected} Disconnected */
/** @typedef {import("../types/index.js").api.Idempotent} Idempotent */

export class ServerApi {
  #base;
  #key;
  #fetch;

  /** @param {import("../types/index.js").ServerApiOptions} options */
  constructor(options) {
    this.#base = `${httpBase(options.url)}/api/v1`;
    this.#key = options.apiKey;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * @template T
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {Idempotent} [options]
   * @returns {Promise<T>}
   */
  async #call(method, path, body, options = {}) {
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${this.#key}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey;
    const response = await this.#fetch(`${this.#base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    /** @type {any} */
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      const detail = json && typeof json === "object" && json.error ? json.error : null;
      throw new RookeryError(
        detail?.code ?? codeOf(response.status),
        detail?.message ?? `HTTP ${response.status}`,
        { status: response.status, retryAfter: retryAfter(response) },
      );
    }
    return /** @type {T} */ (json);
  }

  /**
   * @param {string} room
   * @param {PublishRequest} body
   * @param {Idempotent} [options]
   * @returns {Promise<Published>}
   */
  publish(room, body, options) {
    return this.#call("POST", `/rooms/${encodeURIComponent(room)}/messages`, body, options);
  }

  /**
   * @param {string} user
   * @param {DirectRequest} body
   * @param {Idempotent} [options]
   * @returns {Promise<Published>}
   */
  direct(user, body, options) {
    return this.#call("POST", `/users/${encodeURIComponent(user)}/messages`, body, options);
  }

  /**
   * @param {BroadcastRequest} body
   * @param {Idempotent} [options]
   * @returns {Promise<BroadcastResult>}
   */
  broadcast(body, options) {
    return this.#call("POST", "/broadcast", body, options);
  }

  /**
   * @param {string} room
   * @param {HistoryQuery} [query]
   * @returns {Promise<History>}
   */
  history(room, query = {}) {
    const params = new URLSearchParams();
    for (const key of /** @type {const} */ (["before", "after", "limit"])) {
      const value = query[key];
      if (value !== undefined) params.set(key, String(value));
    }
    const search = params.toString() ? `?${params}` : "";
    return this.#call("GET", `/rooms/${encodeURIComponent(room)}/messages${search}`);
  }

  /**
   * @param {string} room
   * @returns {Promise<Presence>}
   */
  presence(room) {
    return this.#call("GET", `/rooms/${encodeURIComponent(room)}/presence`);
  }

  /**
   * @param {string} user
   * @returns {Promise<Connections>}
   */
  connections(user) {
    return this.#call("GET", `/users/${encodeURIComponent(user)}/connections`);
  }

  /**
   * @param {string} user
   * @param {DisconnectRequest} [body]
   * @returns {Promise<Disconnected>}
   */
  disconnect(user, body = {}) {
    return this.#call("POST", `/users/${encodeURIComponent(user)}/disconnect`, body);
  }

  /** @returns {Promise<Record<string, unknown>>} */
  openapi() {
    return this.#call("GET", "/openapi.json");
  }
}
