//! What one broker backend provides; the driver is its only caller.

use async_trait::async_trait;
use tokio::sync::mpsc;

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
