//! Configuration: command-line flags, each with an environment variable.

mod api;
mod cluster;
mod store;

pub use api::ApiKey;
pub use cluster::{AdapterKind, BrokerTarget};
pub use store::MongoConfig;

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "rookery", version, about = "A clustered chat server")]
pub struct Config {
    /// Run a one-off task instead of the server.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Where the embedded store keeps its database file.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Where profile photos are written; shared by all replicas. Defaults to DATA_DIR/uploads.
    #[arg(long, env = "UPLOAD_DIR")]
    pub upload_dir: Option<PathBuf>,

    /// HTTP worker threads; 0 means one per core.
    #[arg(long, env = "WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Frames per second a connection may send on average; 0 disables the limit.
    #[arg(long, env = "RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,

    /// Frames a connection may send in a burst above the average rate.
    #[arg(long, env = "RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Messages per second a user may store on average across all their
    /// connections and replicas (a `group` counts once per recipient);
    /// 0 disables the limit.
    #[arg(long, env = "USER_RATE_LIMIT", default_value_t = 20)]
    pub user_rate_limit: u32,

    /// Messages a user may store at once above their average rate; also the
    /// largest `group` they can send.
    #[arg(long, env = "USER_RATE_BURST", default_value_t = 60)]
    pub user_rate_burst: u32,

    /// Messages that may wait for the store at once, replica-wide; past it a
    /// reliable send is refused with `overloaded` instead of queueing.
    #[arg(long, env = "STORE_QUEUE", default_value_t = 20_000)]
    pub store_queue: usize,

    /// Mark cookies Secure (set this when serving over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// How long a login lasts without activity, in hours.
    #[arg(long, env = "SESSION_TTL_HOURS", default_value_t = 24 * 7)]
    pub session_ttl_hours: u32,

    /// Messages older than this many days are deleted (0: kept forever).
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,

    /// Each room keeps its newest this many messages (0: no cap).
    #[arg(long, env = "RETENTION_MESSAGES", default_value_t = 0)]
    pub retention_messages: u64,

    /// Seconds between two prunes, when a retention is set.
    #[arg(long, env = "RETENTION_CHECK_SECONDS", default_value_t = 600)]
    pub retention_check_secs: u64,

    /// How often an open chat connection checks that its login still
    /// exists (not expired, not deleted from the store), in seconds; one
    /// whose login is gone is closed with `logged_out`.
    #[arg(long, env = "LOGIN_RECHECK_SECONDS", default_value_t = 60)]
    pub login_recheck_secs: u64,

    /// Seconds in-flight requests and connections get to finish at shutdown.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,

    /// MongoDB connection string, e.g. `mongodb://user:pass@db:27017/rookery`;
    /// wins over DB_HOST. Without either, the embedded SQLite store is used.
    #[arg(long, env = "MONGO_URL", hide_env_values = true)]
    pub mongo_url: Option<String>,

    /// MongoDB host, when not giving MONGO_URL.
    #[arg(long, env = "DB_HOST")]
    pub db_host: Option<String>,

    #[arg(long, env = "DB_PORT", default_value_t = 27017)]
    pub db_port: u16,

    /// MongoDB user, authenticated against MONGO_DATABASE.
    #[arg(long, env = "MONGO_USERNAME")]
    pub mongo_username: Option<String>,

    #[arg(long, env = "MONGO_PASSWORD", hide_env_values = true)]
    pub mongo_password: Option<String>,

    /// MongoDB database, unless MONGO_URL names one.
    #[arg(long, env = "MONGO_DATABASE", default_value = "rookery")]
    pub mongo_database: String,

    /// When an `ack` from the embedded SQLite store is durable: `full`
    /// (the default) fsyncs each group commit, so it survives power loss;
    /// `normal` survives only the process crashing, for more throughput
    /// on slow disks.
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value_t)]
    pub sqlite_synchronous: crate::store::sqlite::Synchronous,

    /// Run as one of several replicas, with the broker named by RABBIT_HOST
    /// (preferred), REDIS_HOST or NATS_HOST, as docker-chat did.
    #[arg(long, env = "SCALABLE", default_value_t = false)]
    pub scalable: bool,

    /// The cluster adapter, explicitly: redis, rabbitmq, nats or none.
    /// Overrides SCALABLE's choice.
    #[arg(long, env = "ADAPTER", value_enum)]
    pub adapter: Option<AdapterKind>,

    /// Redis for the redis adapter, e.g. `redis://redis:6379`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,

    /// RabbitMQ for the rabbitmq adapter, e.g. `amqp://user:pass@rabbit:5672/%2f`.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// RabbitMQ host (as guest/guest on the default vhost).
    #[arg(long, env = "RABBIT_HOST")]
    pub rabbit_host: Option<String>,
    #[arg(long, env = "RABBIT_PORT", default_value_t = 5672)]
    pub rabbit_port: u16,

    /// NATS for the nats adapter, e.g. `nats://nats:4222`.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    #[arg(long, env = "NATS_HOST")]
    pub nats_host: Option<String>,
    #[arg(long, env = "NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,

    /// The key replicas sign their cluster messages with (at least 32
    /// bytes). Unset: one is generated and kept in the database, which
    /// every replica shares. Set it when replicas use separate databases,
    /// or to rotate it (all replicas at once).
    #[arg(long, env = "CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<String>,

    /// This replica's name in logs and /healthz; defaults to hostname plus a random suffix.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Identity provider: logins are POSTed here and its answer decides.
    #[arg(long, env = "AUTH_WEBHOOK_URL")]
    pub auth_webhook_url: Option<String>,

    /// Asked before a direct or group message to a user, or a room join.
    #[arg(long, env = "AUTHORIZE_WEBHOOK_URL")]
    pub authorize_webhook_url: Option<String>,

    /// Seconds an allow from the authorization webhook is reused.
    #[arg(long, env = "AUTHORIZE_CACHE_SECS", default_value_t = 30)]
    pub authorize_cache_secs: u64,

    /// Periodically sent this replica's connected users; disconnects those it reports invalid.
    #[arg(long, env = "VALIDITY_WEBHOOK_URL")]
    pub validity_webhook_url: Option<String>,

    /// Seconds between validity checks.
    #[arg(long, env = "VALIDITY_INTERVAL_SECS", default_value_t = 60)]
    pub validity_interval_secs: u64,

    /// Receives user_connected / user_disconnected events.
    #[arg(long, env = "EVENTS_WEBHOOK_URL")]
    pub events_webhook_url: Option<String>,

    /// Connection events waiting for a slow or unreachable events webhook,
    /// at most; past it new events are dropped (and counted).
    #[arg(long, env = "EVENTS_QUEUE", default_value_t = 10_000)]
    pub events_queue: usize,

    /// Milliseconds any webhook may take before it counts as down.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 2000)]
    pub webhook_timeout_ms: u64,

    /// Users (comma-separated) whose connections receive connection events.
    #[arg(long, env = "ADMIN_USERS", value_delimiter = ',')]
    pub admin_users: Vec<String>,

    /// At most one live connection per user across the cluster; a new one
    /// closes the older ones (close reason `replaced`).
    #[arg(long, env = "SINGLE_SESSION", default_value_t = false)]
    pub single_session: bool,

    /// Serve Prometheus metrics at `http://METRICS_ADDR/metrics` (e.g.
    /// `0.0.0.0:9100`), on a listener of their own so they are never
    /// reachable through the public router by accident. Off when unset.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Log lines as `text` (coloured only on a terminal) or `json` (one
    /// object per line, with the node id).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Logins per minute from one client address (0: no limit); past it, 429.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 60)]
    pub login_attempts_per_minute: u32,

    /// Wrong passwords per minute for one account (0: no limit); past it
    /// the account's logins get 429 until the minute has refilled.
    #[arg(long, env = "LOGIN_FAILURES_PER_MINUTE", default_value_t = 5)]
    pub login_failures_per_minute: u32,

    /// New accounts per hour from one client address (0: no limit).
    #[arg(long, env = "REGISTRATIONS_PER_HOUR", default_value_t = 20)]
    pub registrations_per_hour: u32,

    /// Take the client address from the last `X-Forwarded-For` hop (the
    /// one the proxy appended): set it only behind a proxy that appends it
    /// (traefik does), never when clients reach Rookery directly, or they
    /// choose their address.
    #[arg(long, env = "TRUST_FORWARDED", default_value_t = false)]
    pub trust_forwarded: bool,

    /// Open connections per replica (0: no cap); past it a request gets 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// WebSockets one user may keep open on a replica (0: no cap).
    #[arg(long, env = "WS_PER_USER", default_value_t = 32)]
    pub ws_per_user: usize,

    /// WebSockets one client address may keep open on a replica (0: no
    /// cap); high enough for an office behind one NAT.
    #[arg(long, env = "WS_PER_ADDRESS", default_value_t = 1000)]
    pub ws_per_address: usize,

    /// Seconds a request body (a login form, a photo upload) may take to
    /// arrive; past it the request ends with an error and frees its connection.
    #[arg(long, env = "BODY_TIMEOUT_SECS", default_value_t = 20)]
    pub body_timeout_secs: u64,

    /// Keys a backend presents to the server API (`/api/v1`, as
    /// `Authorization: Bearer KEY`), comma-separated, each 16 to 256
    /// printable ASCII characters. Unset: the API is not served (404).
    #[arg(long, env = "API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<ApiKey>,

    /// Server API requests per second per key (0: no limit); past it, 429.
    /// A broadcast counts once per room.
    #[arg(long, env = "API_RATE_LIMIT", default_value_t = 1000)]
    pub api_rate_limit: u32,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Creates an account as the operator, or takes an existing one over
    /// (new password), in the configured store. Only such accounts can be
    /// `ADMIN_USERS`. The password is read from `ROOKERY_PASSWORD`, or else
    /// the first line of standard input.
    CreateUser { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// A loopback single replica on a free port keeping its data in
    /// `data_dir`; other settings as the flags' defaults and environment give
    /// them. Tests start servers from this.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["rookery"]);
        config.host = "127.0.0.1".into();
        config.port = 0;
        config.data_dir = data_dir.into();
        config.upload_dir = None;
        config.workers = 2;
        config.shutdown_timeout = 1;
        config.node_id = None;
        config.mongo_url = None;
        config.db_host = None;
        config.scalable = false;
        config.adapter = None;
        config.metrics_addr = None;
        config.api_keys = Vec::new();
        // Tests register and log in many users from one address.
        config.login_attempts_per_minute = 0;
        config.login_failures_per_minute = 0;
        config.registrations_per_hour = 0;
        config
    }

    pub fn upload_dir(&self) -> PathBuf {
        self.upload_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("uploads"))
    }

    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, usize::from)
        }
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "rookery".into());
            format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
        })
    }
}

impl Config {
    /// What the store keeps of the messages.
    pub fn retention(&self) -> crate::store::Retention {
        const DAY_MILLIS: crate::store::Millis = 24 * 60 * 60 * 1000;
        crate::store::Retention {
            max_age: (self.retention_days > 0)
                .then(|| crate::store::Millis::from(self.retention_days) * DAY_MILLIS),
            per_room: (self.retention_messages > 0).then_some(self.retention_messages),
        }
    }
}

#[cfg(test)]
impl Config {
    /// Flags only: the environment of the test run (scripts/test.sh sets
    /// MONGO_URL, say) must not leak into what these tests see.
    pub(crate) fn from_flags(args: &[&str]) -> Config {
        use clap::{CommandFactory, FromArgMatches};
        let command = Config::command().mut_args(|arg| arg.env(None::<&str>));
        let matches =
            command.get_matches_from(std::iter::once("rookery").chain(args.iter().copied()));
        Config::from_arg_matches(&matches).unwrap()
    }
}
