//! RabbitMQ: one direct exchange; each replica consumes from its own
//! exclusive, auto-deleted queue and binds it to the routing keys (channels)
//! it wants.

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::mpsc;

use super::{Broker, BrokerError, BrokerEvent};

const EXCHANGE: &str = "rookery";

pub struct RabbitBroker {
    url: String,
    link: Option<Link>,
}

struct Link {
    // Kept so the connection lives as long as the link.
    _connection: Connection,
    channel: Channel,
    queue: String,
}

impl RabbitBroker {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            link: None,
        }
    }

    fn link(&self) -> Result<&Link, BrokerError> {
        self.link
            .as_ref()
            .ok_or_else(|| BrokerError::not_connected("AMQP"))
    }
}

fn amqp_error(context: &'static str) -> impl Fn(lapin::Error) -> BrokerError {
    move |err| BrokerError::new(context, err)
}

#[async_trait]
impl Broker for RabbitBroker {
    async fn connect(
        &mut self,
        events: mpsc::UnboundedSender<BrokerEvent>,
    ) -> Result<(), BrokerError> {
        self.link = None;
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(amqp_error("AMQP connect"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(amqp_error("AMQP channel"))?;
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("AMQP exchange.declare"))?;
        // Server-named, exclusive and auto-deleted: it dies with this
        // connection, so a dead replica leaves nothing queued behind.
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("AMQP queue.declare"))?;
        let queue = queue.name().to_string();
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "rookery".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("AMQP basic.consume"))?;
        tokio::spawn(async move {
            while let Some(delivery) = consumer.next().await {
                match delivery {
                    Ok(delivery) => {
                        let event = BrokerEvent::Message {
                            channel: delivery.routing_key.to_string(),
                            payload: delivery.data,
                        };
                        if events.send(event).is_err() {
                            return;
                        }
                    }
                    Err(err) => {
                        let _ = events.send(BrokerEvent::Lost(format!("AMQP consumer: {err}")));
                        return;
                    }
                }
            }
            let _ = events.send(BrokerEvent::Lost("AMQP consumer ended".into()));
        });
        self.link = Some(Link {
            _connection: connection,
            channel,
            queue,
        });
        Ok(())
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        let link = self.link()?;
        link.channel
            .queue_bind(
                link.queue.as_str().into(),
                EXCHANGE.into(),
                channel.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("AMQP queue.bind"))
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        let link = self.link()?;
        link.channel
            .queue_unbind(
                link.queue.as_str().into(),
                EXCHANGE.into(),
                channel.into(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("AMQP queue.unbind"))
    }

    async fn publish(&mut self, channel: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let link = self.link()?;
        link.channel
            .basic_publish(
                EXCHANGE.into(),
                channel.into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default(),
            )
            .await
            .map(drop)
            .map_err(amqp_error("AMQP basic.publish"))
    }

    /// A passive declare of the exchange is a full round trip on the
    /// channel: a link cut without a TCP reset fails it within the
    /// driver's bound (`BROKER_TIMEOUT`), long before AMQP's own heartbeat notices.
    async fn probe(&mut self) -> Result<(), BrokerError> {
        let link = self.link()?;
        link.channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("AMQP probe"))
    }
}
