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
//! Names in channels are encoded (`events.rs`): a user's name is never a
//! broker's syntax. Every envelope is signed with the cluster key and
//! checked before it is parsed (`seal.rs`): the broker is a shared bus, and
//! only replicas may speak on it.
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

mod broker;
mod driver;
mod events;
pub mod nats;
pub mod rabbitmq;
pub mod redis;
mod seal;

pub use broker::{Broker, BrokerError, BrokerEvent};
use driver::{Command, Driver};
use events::Envelope;
pub use events::{
    node_channel, room_channel, user_channel, Connection, Control, RoomEvent, Traffic,
    ADMIN_CHANNEL, REPLICAS_CHANNEL,
};
pub use seal::{generate_key, Seal, MIN_KEY};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

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
    pub event: Traffic,
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
    pub event: Traffic,
}

/// Where inbound events go; sent once the registry is running.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub remote: Recipient<Remote>,
    pub resync: Recipient<Resync>,
}

/// A message the driver received on `channel`.
#[derive(Message)]
#[rtype(result = "()")]
struct Received {
    channel: String,
    payload: Vec<u8>,
}

/// Answered once everything published before it has gone to the broker
/// (or been dropped for want of one): the last step of a drain.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush(oneshot::Sender<()>);

/// The cluster adapter actor of one replica.
pub struct Cluster {
    node: String,
    /// Signs what this replica publishes, checks what it receives.
    seal: Seal,
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
    pub fn new(
        node: String,
        seal: Seal,
        broker_name: &'static str,
        broker: Box<dyn Broker>,
    ) -> Self {
        Self {
            node,
            seal,
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
        for body in Envelope::encode(&self.node, &publish.event, seal::MAX_BODY) {
            let body = match body {
                Ok(body) => body,
                Err(size) => {
                    // Only a presence snapshot of tens of thousands of users
                    // gets here; every other event is bounded or split.
                    tracing::error!(
                        size,
                        room = match &publish.event {
                            Traffic::Room(event) => Some(event.room()),
                            Traffic::Control(_) => None,
                        },
                        "a cluster event too large to publish is left out"
                    );
                    continue;
                }
            };
            for channel in &publish.channels {
                let payload = self.seal.sign(channel, &body);
                self.command(Command::Publish(channel.clone(), payload));
            }
        }
    }
}

impl Handler<Received> for Cluster {
    type Result = ();

    fn handle(&mut self, received: Received, _ctx: &mut Self::Context) {
        let body = match self.seal.open(&received.channel, &received.payload) {
            Ok(body) => body,
            Err(refusal) => {
                dropped(&received.channel, refusal.label(), "");
                return;
            }
        };
        let envelope: Envelope = match serde_json::from_slice(body) {
            Ok(envelope) => envelope,
            Err(err) => {
                dropped(
                    &received.channel,
                    crate::metrics::dropped::UNDECODABLE,
                    &err.to_string(),
                );
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

/// Counts a message dropped unread; logs the 1st, 2nd, 4th, 8th… of each
/// reason, so a flood of forgeries cannot flood the log.
fn dropped(channel: &str, reason: &'static str, error: &str) {
    let counter = crate::metrics::get().broker_dropped.get(reason);
    counter.inc();
    let count = counter.get();
    if count.is_power_of_two() {
        tracing::warn!(
            channel,
            reason,
            error,
            count,
            "dropped a message from the broker: not a replica of this cluster (another key, \
             another version, or something else publishing on the broker)"
        );
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

/// What rooms and the registry hold: the cluster actor, or nothing for a
/// single replica (then every call is a no-op).
#[derive(Clone, Default)]
pub struct ClusterHandle {
    inner: Option<(Addr<Cluster>, &'static str, Arc<AtomicBool>)>,
}

impl ClusterHandle {
    /// Starts the cluster actor for `broker`, signing with `seal`.
    pub fn start(
        node: String,
        seal: Seal,
        broker_name: &'static str,
        broker: Box<dyn Broker>,
    ) -> Self {
        let cluster = Cluster::new(node, seal, broker_name, broker);
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

    pub fn publish(&self, channels: Vec<String>, event: impl Into<Traffic>) {
        if let Some((addr, ..)) = &self.inner {
            addr.do_send(Publish {
                channels,
                event: event.into(),
            });
        }
    }
}
