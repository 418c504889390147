// @rookery/client: a dependency-free client for the Rookery chat server.
// Types: ../types/index.d.ts. Protocol: docs/PROTOCOL.md of the server.

export { Client, connect, directRoom } from "./client.js";
export { Room } from "./room.js";
export { Emitter } from "./emitter.js";
export { RookeryError } from "./errors.js";
export { login, logout, ServerApi, API_OPERATIONS } from "./http.js";
export { Backoff, closeDecision } from "./backoff.js";
export { Sequencer } from "./sequencer.js";
