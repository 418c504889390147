//! Which broker joins the replicas: `ADAPTER` and its URL, or docker-chat's
//! `SCALABLE` with a broker's host.

use super::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdapterKind {
    Redis,
    Rabbitmq,
    Nats,
    None,
}

/// A cluster broker and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTarget {
    Redis(String),
    Rabbitmq(String),
    Nats(String),
}

impl BrokerTarget {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Rabbitmq(_) => "rabbitmq",
            Self::Nats(_) => "nats",
        }
    }
}

impl Config {
    /// The broker this replica joins the cluster through; `None` for a
    /// single replica.
    pub fn cluster(&self) -> anyhow::Result<Option<BrokerTarget>> {
        let set = |value: &Option<String>| value.clone().filter(|value| !value.trim().is_empty());
        let redis = || {
            set(&self.redis_url).or_else(|| {
                set(&self.redis_host).map(|host| format!("redis://{host}:{}", self.redis_port))
            })
        };
        let rabbit = || {
            set(&self.amqp_url).or_else(|| {
                set(&self.rabbit_host)
                    .map(|host| format!("amqp://guest:guest@{host}:{}/%2f", self.rabbit_port))
            })
        };
        let nats = || {
            set(&self.nats_url).or_else(|| {
                set(&self.nats_host).map(|host| format!("nats://{host}:{}", self.nats_port))
            })
        };
        let missing = |what: &str| anyhow::anyhow!("ADAPTER={what} needs its broker's URL or host");
        Ok(match self.adapter {
            Some(AdapterKind::None) => None,
            Some(AdapterKind::Redis) => Some(BrokerTarget::Redis(
                redis().ok_or_else(|| missing("redis"))?,
            )),
            Some(AdapterKind::Rabbitmq) => Some(BrokerTarget::Rabbitmq(
                rabbit().ok_or_else(|| missing("rabbitmq"))?,
            )),
            Some(AdapterKind::Nats) => {
                Some(BrokerTarget::Nats(nats().ok_or_else(|| missing("nats"))?))
            }
            None if self.scalable => Some(
                rabbit()
                    .map(BrokerTarget::Rabbitmq)
                    .or_else(|| redis().map(BrokerTarget::Redis))
                    .or_else(|| nats().map(BrokerTarget::Nats))
                    .ok_or_else(|| {
                        anyhow::anyhow!("SCALABLE=true needs RABBIT_HOST, REDIS_HOST or NATS_HOST")
                    })?,
            ),
            None => None,
        })
    }
}

impl Config {
    /// `CLUSTER_KEY` as bytes, if set; an error if too short to be a key.
    pub fn cluster_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(key) = self.cluster_key.as_deref().filter(|key| !key.is_empty()) else {
            return Ok(None);
        };
        anyhow::ensure!(
            key.len() >= crate::cluster::MIN_KEY,
            "CLUSTER_KEY has {} bytes; it needs at least {} (e.g. `openssl rand -hex 32`)",
            key.len(),
            crate::cluster::MIN_KEY
        );
        Ok(Some(key.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalable_picks_rabbitmq_first_then_redis_then_nats() {
        let pick = |args: &[&str]| Config::from_flags(args).cluster().unwrap();
        assert_eq!(
            pick(&["--redis-host", "r"]),
            None,
            "a broker alone does not make a cluster"
        );
        assert_eq!(
            pick(&[
                "--scalable",
                "--redis-host",
                "r",
                "--rabbit-host",
                "q",
                "--nats-host",
                "n"
            ]),
            Some(BrokerTarget::Rabbitmq(
                "amqp://guest:guest@q:5672/%2f".into()
            ))
        );
        assert_eq!(
            pick(&["--scalable", "--redis-host", "r", "--nats-host", "n"]),
            Some(BrokerTarget::Redis("redis://r:6379".into()))
        );
        assert_eq!(
            pick(&["--scalable", "--nats-host", "n"]),
            Some(BrokerTarget::Nats("nats://n:4222".into()))
        );
        assert_eq!(
            pick(&[
                "--adapter",
                "nats",
                "--redis-host",
                "r",
                "--nats-url",
                "nats://x:1"
            ]),
            Some(BrokerTarget::Nats("nats://x:1".into()))
        );
        assert_eq!(
            pick(&["--scalable", "--adapter", "none", "--redis-host", "r"]),
            None
        );
        assert!(
            Config::from_flags(&["--scalable"]).cluster().is_err(),
            "SCALABLE without a broker is an error"
        );
    }

    #[test]
    fn a_cluster_key_is_long_enough_or_refused() {
        let key = |args: &[&str]| Config::from_flags(args).cluster_key();
        assert_eq!(key(&[]).unwrap(), None);
        assert_eq!(key(&["--cluster-key", ""]).unwrap(), None);
        let long = "k".repeat(32);
        assert_eq!(
            key(&["--cluster-key", &long]).unwrap(),
            Some(long.into_bytes())
        );
        let refused = key(&["--cluster-key", "short"]).unwrap_err().to_string();
        assert!(refused.contains("at least 32"), "{refused}");
    }
}
