//! NATS core pub/sub. The client reconnects and restores subscriptions by
//! itself; this adapter only reports the reconnect so rooms catch up, and
//! asks the server not to echo this replica's own messages back.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::connection::State;
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Broker, BrokerError, BrokerEvent};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between the client's own reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

pub struct NatsBroker {
    url: String,
    client: Option<async_nats::Client>,
    /// One forwarding task per subscription; aborting it drops (and so
    /// unsubscribes) the subscriber.
    subscriptions: HashMap<String, JoinHandle<()>>,
    events: Option<mpsc::UnboundedSender<BrokerEvent>>,
}

impl NatsBroker {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: None,
            subscriptions: HashMap::new(),
            events: None,
        }
    }

    fn client(&self) -> Result<&async_nats::Client, BrokerError> {
        self.client
            .as_ref()
            .ok_or_else(|| BrokerError::not_connected("NATS"))
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn connect(
        &mut self,
        events: mpsc::UnboundedSender<BrokerEvent>,
    ) -> Result<(), BrokerError> {
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
        let report = events.clone();
        // The client says Connected for its first connection too, which
        // `connect` returning reports already: only later ones are news.
        let connected_before = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut options = async_nats::ConnectOptions::new();
        // The client reads the server from the URL but not its credentials.
        let server: async_nats::ServerAddr = self
            .url
            .parse()
            .map_err(|err| BrokerError::new("NATS_URL", err))?;
        if let (Some(user), Some(pass)) = (server.username(), server.password()) {
            options = options.user_and_password(user.to_owned(), pass.to_owned());
        }
        let client = options
            .no_echo()
            .name("rookery")
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                (Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(6) as u32))
                    .min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let (report, connected_before) = (report.clone(), connected_before.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            if connected_before.swap(true, std::sync::atomic::Ordering::Relaxed) {
                                let _ = report.send(BrokerEvent::Reconnected);
                            }
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS disconnected; the client reconnects by itself");
                            let _ = report.send(BrokerEvent::Disconnected);
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(self.url.as_str())
            .await
            .map_err(|err| BrokerError::new("NATS connect", err))?;
        self.client = Some(client);
        self.events = Some(events);
        Ok(())
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        let mut subscriber = self
            .client()?
            .subscribe(channel.to_owned())
            .await
            .map_err(|err| BrokerError::new("NATS subscribe", err))?;
        let events = self.events.clone().expect("connected");
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let event = BrokerEvent::Message {
                    channel: message.subject.to_string(),
                    payload: message.payload.to_vec(),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        if let Some(previous) = self.subscriptions.insert(channel.to_owned(), task) {
            previous.abort();
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        if let Some(task) = self.subscriptions.remove(channel) {
            task.abort();
        }
        Ok(())
    }

    async fn publish(&mut self, channel: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let client = self.client()?;
        // While the client is reconnecting, a publish would wait in its
        // buffer; the store already has the message, so skip it instead.
        if client.connection_state() != State::Connected {
            return Ok(());
        }
        client
            .publish(channel.to_owned(), payload.into())
            .await
            .map_err(|err| BrokerError::new("NATS publish", err))
    }

    async fn probe(&mut self) -> Result<(), BrokerError> {
        let client = self.client()?;
        // The client reconnects by itself and says so; only a link that
        // claims to be up and does not answer needs the driver.
        if client.connection_state() != State::Connected {
            return Ok(());
        }
        client
            .flush()
            .await
            .map_err(|err| BrokerError::new("NATS flush", err))
    }
}
