// The one error type the SDK rejects with: `code` is the protocol's error
// code (docs/PROTOCOL.md, "Error codes"), the server API's, or one of the
// SDK's own (queue_full, closed, ...), so callers can switch on it.

/** @typedef {import("../types/index.js").ErrorCode} ErrorCode */

export class RookeryError extends Error {
  /**
   * @param {ErrorCode} code
   * @param {string} message
   * @param {{ ref?: unknown, room?: string, to?: string, status?: number,
   *           retryAfter?: number, closeCode?: number, closeReason?: string }} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "RookeryError";
    /** @type {ErrorCode} */
    this.code = code;
    /** The `ref` of the refused frame, when it had one. */
    this.ref = details.ref;
    /** The room the refused operation was about, when known. */
    this.room = details.room;
    /** For a `direct`/`group` refusal: the recipient it is about. */
    this.to = details.to;
    /** For HTTP errors (login, server API): the status. */
    this.status = details.status;
    /** For HTTP 429 answers: seconds the server asked to wait. */
    this.retryAfter = details.retryAfter;
    /** For `closed`: the WebSocket close code and reason that ended the client. */
    this.closeCode = details.closeCode;
    this.closeReason = details.closeReason;
  }
}

/**
 * Error codes after which the same frame may be sent again as a retry:
 * the server says "not known" (`store_uncertain`) or "not now" (`overloaded`).
 * @param {string} code
 */
export const isRetryable = (code) => code === "store_uncertain" || code === "overloaded";
