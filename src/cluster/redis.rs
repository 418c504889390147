//! Redis pub/sub: one connection subscribed to this replica's channels, one
//! multiplexed connection for publishing.

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::mpsc;

use super::{Broker, BrokerError, BrokerEvent};

pub struct RedisBroker {
    client: redis::Client,
    publisher: Option<MultiplexedConnection>,
    subscriber: Option<PubSubSink>,
}

impl RedisBroker {
    /// Checks the URL; nothing is contacted until [`Broker::connect`].
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            publisher: None,
            subscriber: None,
        })
    }

    fn subscriber(&mut self) -> Result<&mut PubSubSink, BrokerError> {
        self.subscriber
            .as_mut()
            .ok_or_else(|| BrokerError::not_connected("redis"))
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn connect(
        &mut self,
        events: mpsc::UnboundedSender<BrokerEvent>,
    ) -> Result<(), BrokerError> {
        self.publisher = None;
        self.subscriber = None;
        let publisher = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|err| BrokerError::new("redis connect", err))?;
        let (sink, mut stream) = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|err| BrokerError::new("redis subscribe connection", err))?
            .split();
        tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                let event = BrokerEvent::Message {
                    channel: message.get_channel_name().to_owned(),
                    payload: message.get_payload_bytes().to_vec(),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
            let _ = events.send(BrokerEvent::Lost(
                "redis closed the subscription connection".into(),
            ));
        });
        self.publisher = Some(publisher);
        self.subscriber = Some(sink);
        Ok(())
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        self.subscriber()?
            .subscribe(channel)
            .await
            .map_err(|err| BrokerError::new("redis SUBSCRIBE", err))
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        self.subscriber()?
            .unsubscribe(channel)
            .await
            .map_err(|err| BrokerError::new("redis UNSUBSCRIBE", err))
    }

    async fn publish(&mut self, channel: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let publisher = self
            .publisher
            .as_mut()
            .ok_or_else(|| BrokerError::not_connected("redis"))?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .exec_async(publisher)
            .await
            .map_err(|err| BrokerError::new("redis PUBLISH", err))
    }

    async fn probe(&mut self) -> Result<(), BrokerError> {
        let publisher = self
            .publisher
            .as_mut()
            .ok_or_else(|| BrokerError::not_connected("redis"))?;
        redis::cmd("PING")
            .exec_async(publisher)
            .await
            .map_err(|err| BrokerError::new("redis PING", err))?;
        // The subscription connection is the one that receives: probe it too.
        self.subscriber()?
            // A subscribed connection answers PING with ["pong", ""].
            .ping::<redis::Value>()
            .await
            .map(drop)
            .map_err(|err| BrokerError::new("redis PING (subscriber)", err))
    }
}
