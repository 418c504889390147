//! The task that owns the broker connection: it serialises publishes and
//! (un)subscriptions, probes an idle link, reconnects with backoff and
//! resubscribes, then has every room catch up from the store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::events::is_valid_channel;
use super::{Broker, BrokerError, BrokerEvent, Cluster, Received, Resync, Subscribed};

/// First pause before reconnecting to a broker; doubles up to the max.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A broker call (publish, subscribe, probe) not answered within this is
/// taken as a dead link: the driver drops the connection and reconnects.
const BROKER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an idle link is probed, so a link cut without a reset (a
/// partition, a frozen broker) is noticed within seconds, not never.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What the actor asks of the driver, in order.
pub(super) enum Command {
    Subscribe(String, Option<Recipient<Subscribed>>),
    Unsubscribe(String),
    Publish(String, Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// Owns the broker connection; see the module docs.
pub(super) struct Driver {
    pub(super) broker: Box<dyn Broker>,
    pub(super) name: &'static str,
    pub(super) cluster: Addr<Cluster>,
    pub(super) connected: Arc<AtomicBool>,
    /// Channels to hold subscriptions for, restored after every reconnect.
    pub(super) wanted: HashSet<String>,
}

impl Driver {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
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
                            Ok(Err(err)) => break err.to_string(),
                            Err(_) => break format!("no answer within {BROKER_TIMEOUT:?}"),
                        }
                    }
                    _ = probe.tick() => {
                        match tokio::time::timeout(BROKER_TIMEOUT, self.broker.probe()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => break err.to_string(),
                            Err(_) => break format!("no answer to a probe within {BROKER_TIMEOUT:?}"),
                        }
                    }
                    event = events.recv() => match event {
                        Some(BrokerEvent::Message { channel, payload }) => {
                            self.cluster.do_send(Received { channel, payload });
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
                    .unwrap_or_else(|_| {
                        Err(BrokerError::new(
                            "connect",
                            format!("no answer within {timeout:?}"),
                        ))
                    })
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
                        Command::Subscribe(channel, _) if !is_valid_channel(&channel) => refuse(&channel),
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
        if let Command::Subscribe(channel, _) | Command::Publish(channel, _) = &command {
            if !is_valid_channel(channel) {
                refuse(channel);
                // A room waiting to hear its channel is live reads the store
                // instead: it is as live as it will get.
                if let Command::Subscribe(_, Some(notify)) = command {
                    notify.do_send(Subscribed);
                }
                return Ok(());
            }
        }
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

/// A channel no broker takes never reaches one: a broker error on it would
/// read as a lost link, and the reconnect would subscribe it again, forever.
fn refuse(channel: &str) {
    crate::metrics::get().broker_channels_refused.inc();
    tracing::error!(
        channel,
        "refusing a channel no broker takes; it stays local"
    );
}
