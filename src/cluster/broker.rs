//! What one broker backend provides; the driver is its only caller.

use async_trait::async_trait;
use tokio::sync::mpsc;

/// A broker call that failed: what was being done, and the client
/// library's error, kept (and named in the message, which logs print).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct BrokerError {
    context: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BrokerError {
    pub fn new(context: &str, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            context: context.to_owned(),
            source: err.into(),
        }
    }

    /// A call made while the client has no connection.
    pub fn not_connected(context: &str) -> Self {
        Self::new(context, "not connected")
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
