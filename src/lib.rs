//! Rookery: a chat server built from actix actors.
//!
//! # Layout
//!
//! A message travels one way through these modules:
//! socket → session actor → room → cluster adapter → other replicas → rooms
//! → sessions.
//!
//! - [`config`]: flags and environment variables, and what each component
//!   derives from them (the API's keys, the broker, the database).
//! - [`http`]: the route table, server-rendered pages (askama templates in
//!   `templates/`, assets in `static/`), login, avatar uploads (decoded
//!   within bounds and encoded again, [`http::images`]), health, and
//!   [`http::api`], the server API for backends (`/api/v1`; its OpenAPI
//!   document states every rule it enforces).
//! - [`app`]: what every endpoint shares, below both `http` and `ws`: the
//!   replica state handed to handlers, who a session is logged in as, what
//!   a request says about its sender, connection caps, login throttles and
//!   each user's message budget across connections and replicas
//!   ([`app::budget`]).
//! - [`event`]: a room's stream, the model every layer below and above
//!   converts to at its edge: an [`event::Event`] (seq, id, author, time,
//!   a body: a message, an edit or a delete) made only by its constructors, what
//!   the sequencer orders ([`event::Sequenced`]), and an [`event::Entry`]
//!   (an event with the transport's `fast` flag).
//! - [`protocol`]: the whole wire protocol (client frames, server frames,
//!   error codes and close reasons, the bounded JSON reader and the
//!   one-pass reader of common frames), depending on nothing else in the
//!   crate.
//! - [`ws`]: the WebSocket endpoint; [`ws::outbox`], what waits to be
//!   written to one client (a plain, unit-tested part); and [`ws::session`],
//!   the actor behind each connection (the outbox on the socket and the
//!   heartbeat, frame dispatch, rooms, direct messages, edits and deletes:
//!   one file each).
//! - [`chat`]: the [`chat::room::Room`] actor (persists, sequences and fans
//!   out a room's messages; its write queue, delivery and join handshake in
//!   their own files) over plain parts with their own unit tests
//!   ([`chat::room::sequencer`]: `seq` order, exactly once, gap fills;
//!   the write queue, `queue.rs`: batches, one in flight;
//!   [`chat::room::presence`]: who is online), and the
//!   [`chat::registry::Registry`] that starts, joins and retires rooms (on
//!   the HTTP workers' threads, [`chat::registry::RoomThreads`]), holds
//!   the connection policies (single session, refusals), and answers the
//!   server API (rooms without members here, a user's connections on every
//!   replica, disconnects); one file per concern.
//! - [`cluster`]: what crosses replicas, by kind: a room's traffic
//!   ([`cluster::RoomEvent`]) and everything about users and replicas
//!   ([`cluster::Control`]), in an envelope format that stays readable
//!   across releases (golden files in `tests/golden/cluster/`). The
//!   [`cluster::Cluster`] actor
//!   keeps per-room and per-user subscriptions and hands remote events
//!   to the registry, signing what it publishes and checking
//!   what it receives ([`cluster::Seal`]); a driver task (`driver.rs`) owns the
//!   broker connection (reconnect, resubscribe) behind the
//!   [`cluster::Broker`] trait, implemented once per broker in `redis.rs`,
//!   `rabbitmq.rs` and `nats.rs`.
//! - [`store`]: the [`store::Store`] trait with the embedded SQLite backend
//!   (one writer thread committing every room's writes together) and the
//!   shared MongoDB one, each a folder by concern (schema, append, inbox,
//!   sessions, users, prune for the retention); [`store::StoreError::rejected`] is how a client hears
//!   of a store failure; [`store::backlog`] bounds what waits for them,
//!   [`store::bounded`] bounds how long they take; the actix-session store
//!   built on it.
//! - [`hooks`]: the optional webhooks (auth, authorize, validity, events)
//!   and what each does when its receiver is down.
//! - [`logging`]: text or JSON log lines (`LOG_FORMAT`).
//! - [`metrics`]: the process's Prometheus counters and histograms, served
//!   on their own address by [`http::metrics`].
//! - [`server`]: wires all of the above into a running replica, serving a
//!   standby app until the store answers.
//!
//! # Words
//!
//! One word per idea, in the code and the docs:
//!
//! - **connection**: one WebSocket. Its actor is its **session**
//!   ([`ws::session`], known by a [`chat::SessionId`]); a **login** is the
//!   HTTP session (the cookie) it was opened with. A user may have several
//!   connections; each is a **member** of the rooms it joined.
//! - **frame**: one protocol message on the socket ([`protocol`]); a frame
//!   on its way to one connection is an [`chat::Outgoing`], and waits in
//!   that connection's **outbox** ([`ws::outbox`]) until it is written.
//! - **room**: **public** (a name anyone may join) or **direct** (`@a:b`,
//!   the two users' names sorted); [`chat::names::RoomKind`] is the one
//!   reader of a room's name.
//! - **event**: one entry of a room's stream, with its **seq** ([`event::Event`]);
//!   a message is one kind of event, a **change** (an **edit** or a
//!   **delete** of a message, named by its id) another. Every layer has its
//!   own shape of it (a store's row, the cluster's envelope, the wire's
//!   frame) and converts at its edge. A message read back is in its
//!   **current state** (edited text, or deleted without text).
//! - **draft**: what a new event will be before the store gives it its seq
//!   ([`store::Draft`], inside a [`store::NewEvent`]).
//! - **post**: a message a member hands its room. It is **stored** once the
//!   store gave it its **seq** (per room, from 1, without holes), and the
//!   **ack** tells its author so. **Reliable** and **fast** are the two ways
//!   a post travels ([`protocol::Delivery`]).
//! - **deliver**: hand stored messages to members, in seq order, each once
//!   ([`chat::room::sequencer`]). A **gap** is a missing seq the room holds
//!   later ones for; a **fill** reads it from the store.
//! - **receipt**: what the sender of a direct message learns later: it was
//!   **delivered** to one of the recipient's connections
//!   ([`store::Receipt`]; told when the sender asked to be, `confirm`), or
//!   **read** up to a seq (a read position).
//! - **inbox**: the direct messages waiting for a recipient who was away
//!   (each sender may fill a tenth of it).
//! - **budget**: how many messages a user may store, across all their
//!   connections and replicas ([`app::budget`]); the frame **rate** is per
//!   connection.
//! - **retention**: what the store keeps of the messages; **pruning**
//!   deletes the rest ([`store::Retention`]).
//! - **resume**: a reconnecting client names the last seq it has of each
//!   room, and the room replays what came after.
//! - **replica**: one process; **node**: its name to the others; **drain**:
//!   emptying a replica before it stops. An **envelope** is what one
//!   replica publishes to the others (a node and an event), **signed** with
//!   the **cluster key**.

pub mod app;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod event;
pub mod hooks;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod store;
pub mod ws;

pub use config::Config;
pub use server::{start, Running, Stopper};
