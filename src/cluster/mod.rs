//! The seam between one replica and the rest of the cluster.
//!
//! Rooms hand what their local members did to the [`Cluster`] actor through
//! a [`ClusterHandle`]; it stamps each event with this replica's node id and
//! publishes it on a broker channel. Traffic is addressed, so a replica only
//! receives what concerns it:
//!
//! - `rookery.room.<room>`: a public room's messages, typing and presence;
//!   subscribed while the room has local members.
//! - `rookery.user.<user>`: direct-room traffic for a user, and (with
//!   `SINGLE_SESSION`) word of their newest connection; subscribed while
//!   the user has a local connection.
//! - `rookery.admin`: connection activity for admin users; subscribed while
//!   an admin is connected.
//!
//! Inbound events go to the registry, which routes them to the room. Events
//! a replica published itself are dropped on arrival (Redis and RabbitMQ
//! hand a publisher its own messages; NATS is told not to).
//!
//! One driver task per replica owns the broker connection. It serialises
//! publishes and (un)subscriptions, reconnects with backoff when the broker
//! goes away, resubscribes by itself, and then tells every room to catch up
//! from the store, so nothing sent during an outage is lost: it was stored
//! before it was published. Publishes while disconnected are dropped for the
//! same reason rather than queued without bound.
//!
//! Each backend is one small [`Broker`] implementation: [`redis`],
//! [`rabbitmq`], [`nats`].

pub mod nats;
pub mod rabbitmq;
pub mod redis;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Delivery, Millis, StoredMessage};

/// First pause before reconnecting to a broker; doubles up to the max.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A broker call (publish, subscribe, probe) not answered within this is
/// taken as a dead link: the driver drops the connection and reconnects.
const BROKER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an idle link is probed, so a link cut without a reset (a
/// partition, a frozen broker) is noticed within seconds, not never.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What a room tells the other replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// Messages were stored, in `seq` order.
    Messages {
        room: String,
        messages: Vec<StoredMessage>,
    },
    Typing {
        room: String,
        user: String,
        active: bool,
    },
    /// The users of `room` connected to the sending replica (empty: none
    /// any more). Repeated as a heartbeat; with `reply`, replicas that have
    /// the room answer with their own, so a new room learns who is online.
    Presence {
        room: String,
        users: Vec<String>,
        reply: bool,
    },
    /// A `fast` message, fanned out before it is stored.
    Fast {
        room: String,
        message: StoredMessage,
    },
    /// `user` read `room` up to `seq`.
    Read {
        room: String,
        user: String,
        seq: u64,
    },
    /// Direct messages of `room` reached their recipient; their senders
    /// asked to be told.
    Delivered {
        room: String,
        deliveries: Vec<Delivery>,
    },
    /// `SINGLE_SESSION`: `user` opened a connection at `at`; their older
    /// connections elsewhere close.
    SessionOpened { user: String, at: Millis },
    /// The login `login` of `user` logged out: its connections close.
    LoginEnded { user: String, login: String },
    /// For admin users, on [`ADMIN_CHANNEL`]: a connection of `user` opened
    /// or closed on the sending replica.
    UserActivity { user: String, connected: bool },
    /// A backend asks for `user`'s connections, on the user's channel (so
    /// only replicas with one hear it); they answer on the asker's
    /// [`node_channel`] with [`ClusterEvent::Connections`].
    ConnectionsAsked { user: String, query: u64 },
    Connections {
        query: u64,
        connections: Vec<Connection>,
    },
    /// A backend closed `user`'s connections, on [`REPLICAS_CHANNEL`]:
    /// every replica closes its own and refuses new ones until `until`.
    UserDisconnected {
        user: String,
        reason: crate::protocol::Evict,
        until: Millis,
    },
}

impl ClusterEvent {
    /// The room the event is for; `None` for events about users.
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Messages { room, .. }
            | Self::Typing { room, .. }
            | Self::Presence { room, .. }
            | Self::Fast { room, .. }
            | Self::Read { room, .. }
            | Self::Delivered { room, .. } => Some(room),
            Self::SessionOpened { .. }
            | Self::LoginEnded { .. }
            | Self::UserActivity { .. }
            | Self::ConnectionsAsked { .. }
            | Self::Connections { .. }
            | Self::UserDisconnected { .. } => None,
        }
    }
}

/// Where connection activity for admin users travels; subscribed while the
/// replica has an admin connected.
pub const ADMIN_CHANNEL: &str = "rookery.admin";

/// An event as it travels: who sent it, and what.
#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    event: ClusterEvent,
}

/// One open connection of a user, as a replica reports it to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The replica holding it.
    pub node: String,
    pub connected_at: Millis,
    /// The rooms it is a member of, sorted.
    pub rooms: Vec<String>,
}

/// What every replica holds: events for the whole cluster.
pub const REPLICAS_CHANNEL: &str = "rookery.replicas";

/// One replica's own channel: answers to its questions.
pub fn node_channel(node: &str) -> String {
    format!("rookery.node.{node}")
}

pub fn room_channel(room: &str) -> String {
    format!("rookery.room.{room}")
}

pub fn user_channel(user: &str) -> String {
    format!("rookery.user.{user}")
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BrokerError(pub String);

impl BrokerError {
    pub fn new(context: &str, err: impl std::fmt::Display) -> Self {
        Self(format!("{context}: {err}"))
    }
}

/// What a broker connection reports to the driver.
pub enum BrokerEvent {
    Message {
        channel: String,
        payload: Vec<u8>,
    },
    /// The client lost its connection and is reconnecting by itself (NATS).
    Disconnected,
    /// The client reconnected by itself (NATS); subscriptions are restored.
    Reconnected,
    /// The connection is gone; the driver reconnects.
    Lost(String),
}

/// One broker backend: a connection that can (un)subscribe and publish.
/// The driver calls these one at a time.
#[async_trait]
pub trait Broker: Send + 'static {
    /// Connects afresh, dropping any previous connection. Inbound messages
    /// and connection loss are reported on `events`.
    async fn connect(
        &mut self,
        events: mpsc::UnboundedSender<BrokerEvent>,
    ) -> Result<(), BrokerError>;
    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError>;
    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError>;
    async fn publish(&mut self, channel: &str, payload: Vec<u8>) -> Result<(), BrokerError>;
    /// A round trip to the broker, to tell a live link from a dead one.
    /// The default trusts the client's own keep-alive.
    async fn probe(&mut self) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// A room's channel subscription is live; anything published before it may
/// have been missed, so the room catches up from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribed;

/// The broker connection was restored: every room catches up from the store
/// and re-announces its presence.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Resync;

/// An event from another replica, for the registry to route.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Remote {
    pub node: String,
    pub event: ClusterEvent,
}

/// Start receiving `channel`; `notify` hears when the subscription is live.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub channel: String,
    pub notify: Option<Recipient<Subscribed>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub channel: String,
}

/// Fire and forget: hand `event` to the replicas listening on `channels`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub channels: Vec<String>,
    pub event: ClusterEvent,
}

/// Where inbound events go; sent once the registry is running.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub remote: Recipient<Remote>,
    pub resync: Recipient<Resync>,
}

/// A message the driver received.
#[derive(Message)]
#[rtype(result = "()")]
struct Received {
    payload: Vec<u8>,
}

/// Answered once everything published before it has gone to the broker
/// (or been dropped for want of one): the last step of a drain.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush(oneshot::Sender<()>);

enum Command {
    Subscribe(String, Option<Recipient<Subscribed>>),
    Unsubscribe(String),
    Publish(String, Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// The cluster adapter actor of one replica.
pub struct Cluster {
    node: String,
    broker_name: &'static str,
    broker: Option<Box<dyn Broker>>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    connected: Arc<AtomicBool>,
    /// Channels and how many local users (rooms, users) want each.
    subscriptions: HashMap<String, usize>,
    remote: Option<Recipient<Remote>>,
    resync: Option<Recipient<Resync>>,
}

impl Cluster {
    pub fn new(node: String, broker_name: &'static str, broker: Box<dyn Broker>) -> Self {
        Self {
            node,
            broker_name,
            broker: Some(broker),
            commands: None,
            connected: Arc::new(AtomicBool::new(false)),
            subscriptions: HashMap::new(),
            remote: None,
            resync: None,
        }
    }

    fn command(&self, command: Command) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(command);
        }
    }
}

impl Actor for Cluster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (commands, queue) = mpsc::unbounded_channel();
        self.commands = Some(commands);
        let broker = self.broker.take().expect("a cluster actor starts once");
        let driver = Driver {
            broker,
            name: self.broker_name,
            cluster: ctx.address(),
            connected: self.connected.clone(),
            wanted: HashSet::new(),
        };
        actix::spawn(driver.run(queue));
    }
}

impl Handler<Attach> for Cluster {
    type Result = ();

    fn handle(&mut self, attach: Attach, _ctx: &mut Self::Context) {
        self.remote = Some(attach.remote);
        self.resync = Some(attach.resync);
    }
}

impl Handler<Subscribe> for Cluster {
    type Result = ();

    fn handle(&mut self, subscribe: Subscribe, _ctx: &mut Self::Context) {
        let count = self
            .subscriptions
            .entry(subscribe.channel.clone())
            .or_default();
        *count += 1;
        // A second subscriber still wants to hear that the channel is live.
        self.command(Command::Subscribe(subscribe.channel, subscribe.notify));
    }
}

impl Handler<Unsubscribe> for Cluster {
    type Result = ();

    fn handle(&mut self, unsubscribe: Unsubscribe, _ctx: &mut Self::Context) {
        let Some(count) = self.subscriptions.get_mut(&unsubscribe.channel) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.subscriptions.remove(&unsubscribe.channel);
            self.command(Command::Unsubscribe(unsubscribe.channel));
        }
    }
}

impl Handler<Flush> for Cluster {
    type Result = ();

    fn handle(&mut self, Flush(done): Flush, _ctx: &mut Self::Context) {
        self.command(Command::Flush(done));
    }
}

impl Handler<Publish> for Cluster {
    type Result = ();

    fn handle(&mut self, publish: Publish, _ctx: &mut Self::Context) {
        let envelope = Envelope {
            node: self.node.clone(),
            event: publish.event,
        };
        let payload = serde_json::to_vec(&envelope).expect("cluster events serialize");
        for channel in publish.channels {
            self.command(Command::Publish(channel, payload.clone()));
        }
    }
}

impl Handler<Received> for Cluster {
    type Result = ();

    fn handle(&mut self, received: Received, _ctx: &mut Self::Context) {
        let envelope: Envelope = match serde_json::from_slice(&received.payload) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(error = %err, "dropping an undecodable cluster message");
                return;
            }
        };
        if envelope.node == self.node {
            return;
        }
        crate::metrics::get().broker_received.inc();
        if let Some(remote) = &self.remote {
            remote.do_send(Remote {
                node: envelope.node,
                event: envelope.event,
            });
        }
    }
}

impl Handler<Resync> for Cluster {
    type Result = ();

    fn handle(&mut self, resync: Resync, _ctx: &mut Self::Context) {
        if let Some(target) = &self.resync {
            target.do_send(resync);
        }
    }
}

/// Owns the broker connection; see the module docs.
struct Driver {
    broker: Box<dyn Broker>,
    name: &'static str,
    cluster: Addr<Cluster>,
    connected: Arc<AtomicBool>,
    /// Channels to hold subscriptions for, restored after every reconnect.
    wanted: HashSet<String>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut reconnecting = false;
        loop {
            let Some(mut events) = self.connect(&mut commands).await else {
                return;
            };
            self.set_connected(true);
            if reconnecting {
                crate::metrics::get().broker_reconnects.inc();
                tracing::info!(
                    broker = self.name,
                    "cluster broker reconnected; rooms catch up from the store"
                );
                self.cluster.do_send(Resync);
            } else {
                tracing::info!(broker = self.name, "cluster broker connected");
            }
            reconnecting = true;
            let mut probe = tokio::time::interval(PROBE_EVERY);
            probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let lost = loop {
                tokio::select! {
                    command = commands.recv() => {
                        let Some(command) = command else { return };
                        match tokio::time::timeout(BROKER_TIMEOUT, self.apply(command)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => break err.0,
                            Err(_) => break format!("no answer within {BROKER_TIMEOUT:?}"),
                        }
                    }
                    _ = probe.tick() => {
                        match tokio::time::timeout(BROKER_TIMEOUT, self.broker.probe()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => break err.0,
                            Err(_) => break format!("no answer to a probe within {BROKER_TIMEOUT:?}"),
                        }
                    }
                    event = events.recv() => match event {
                        Some(BrokerEvent::Message { payload, .. }) => {
                            self.cluster.do_send(Received { payload });
                        }
                        Some(BrokerEvent::Disconnected) => self.set_connected(false),
                        Some(BrokerEvent::Reconnected) => {
                            self.set_connected(true);
                            crate::metrics::get().broker_reconnects.inc();
                            self.cluster.do_send(Resync);
                        }
                        Some(BrokerEvent::Lost(why)) => break why,
                        None => break "the connection task ended".into(),
                    },
                }
            };
            self.set_connected(false);
            tracing::warn!(broker = self.name, reason = %lost, "lost the cluster broker; reconnecting");
        }
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        crate::metrics::get()
            .broker_connected
            .set(i64::from(connected));
    }

    /// Connects and restores subscriptions, retrying with backoff. Commands
    /// arriving meanwhile still update the wanted subscriptions; publishes
    /// are dropped (the messages are in the store). `None` once the
    /// replica is shutting down.
    async fn connect(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<mpsc::UnboundedReceiver<BrokerEvent>> {
        let mut delay = RECONNECT_FIRST;
        let mut dropped = 0usize;
        loop {
            let (sender, events) = mpsc::unbounded_channel();
            let attempt = async {
                self.broker.connect(sender).await?;
                for channel in &self.wanted {
                    self.broker.subscribe(channel).await?;
                }
                Ok::<_, BrokerError>(())
            };
            let timeout = BROKER_TIMEOUT * 2;
            let attempt = async {
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(BrokerError(format!("no answer within {timeout:?}"))))
            };
            match attempt.await {
                Ok(()) => {
                    if dropped > 0 {
                        tracing::info!(broker = self.name, dropped, "publishes skipped while disconnected; receivers catch up from the store");
                    }
                    return Some(events);
                }
                Err(err) => {
                    tracing::warn!(broker = self.name, error = %err, retry_in = ?delay, "cannot reach the cluster broker")
                }
            }
            let pause = tokio::time::sleep(delay);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    command = commands.recv() => match command? {
                        Command::Subscribe(channel, _) => { self.wanted.insert(channel); }
                        Command::Unsubscribe(channel) => { self.wanted.remove(&channel); }
                        Command::Publish(..) => dropped += 1,
                        Command::Flush(done) => { let _ = done.send(()); }
                    },
                }
            }
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }

    async fn apply(&mut self, command: Command) -> Result<(), BrokerError> {
        match command {
            Command::Subscribe(channel, notify) => {
                // Wanted first: if the call fails or times out, the
                // reconnect that follows subscribes it.
                if self.wanted.insert(channel.clone()) {
                    self.broker.subscribe(&channel).await?;
                }
                if let Some(notify) = notify {
                    notify.do_send(Subscribed);
                }
            }
            Command::Unsubscribe(channel) => {
                if self.wanted.remove(&channel) {
                    self.broker.unsubscribe(&channel).await?;
                }
            }
            Command::Publish(channel, payload) => {
                self.broker.publish(&channel, payload).await?;
                crate::metrics::get().broker_published.inc();
            }
            Command::Flush(done) => {
                let _ = done.send(());
            }
        }
        Ok(())
    }
}

/// What rooms and the registry hold: the cluster actor, or nothing for a
/// single replica (then every call is a no-op).
#[derive(Clone, Default)]
pub struct ClusterHandle {
    inner: Option<(Addr<Cluster>, &'static str, Arc<AtomicBool>)>,
}

impl ClusterHandle {
    /// Starts the cluster actor for `broker`.
    pub fn start(node: String, broker_name: &'static str, broker: Box<dyn Broker>) -> Self {
        let cluster = Cluster::new(node, broker_name, broker);
        let connected = cluster.connected.clone();
        Self {
            inner: Some((cluster.start(), broker_name, connected)),
        }
    }

    /// A single replica: nobody to tell.
    pub fn local() -> Self {
        Self::default()
    }

    pub fn is_clustered(&self) -> bool {
        self.inner.is_some()
    }

    /// The adapter's name and whether its broker is connected, for `/healthz`.
    pub fn status(&self) -> Option<(&'static str, bool)> {
        self.inner
            .as_ref()
            .map(|(_, name, connected)| (*name, connected.load(Ordering::Relaxed)))
    }

    /// Whether other replicas' publications can arrive: always for a
    /// single replica (there are none to miss).
    pub fn is_connected(&self) -> bool {
        self.status().is_none_or(|(_, connected)| connected)
    }

    pub fn attach(&self, remote: Recipient<Remote>, resync: Recipient<Resync>) {
        if let Some((addr, ..)) = &self.inner {
            addr.do_send(Attach { remote, resync });
        }
    }

    pub fn subscribe(&self, channel: String, notify: Option<Recipient<Subscribed>>) {
        if let Some((addr, ..)) = &self.inner {
            addr.do_send(Subscribe { channel, notify });
        }
    }

    pub fn unsubscribe(&self, channel: String) {
        if let Some((addr, ..)) = &self.inner {
            addr.do_send(Unsubscribe { channel });
        }
    }

    /// Waits, at most `timeout`, until what was published so far has left
    /// for the broker.
    pub async fn flush(&self, timeout: Duration) {
        let Some((addr, ..)) = &self.inner else {
            return;
        };
        let (done, flushed) = oneshot::channel();
        addr.do_send(Flush(done));
        if tokio::time::timeout(timeout, flushed).await.is_err() {
            tracing::warn!(?timeout, "cluster publishes not flushed in time");
        }
    }

    pub fn publish(&self, channels: Vec<String>, event: ClusterEvent) {
        if let Some((addr, ..)) = &self.inner {
            addr.do_send(Publish { channels, event });
        }
    }
}
