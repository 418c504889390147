//! Assembling a replica: store, actors, HTTP server, and its lifecycle.
//!
//! The listening socket is bound first, so the port is known at once and
//! health probes always get an answer. Until the database has answered (its
//! schema is in place and the shared cookie key is loaded) the socket is
//! served by a small standby app: `/healthz` is up, `/readyz` says why it is
//! not ready, and everything else gets 503. The replica keeps retrying with
//! backoff instead of exiting, then hands the same socket to the real app.

mod replica;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::cluster::redis::RedisBroker;
use crate::config::{BrokerTarget, Config};
use crate::http;
use crate::store::bounded::Bounded;
use crate::store::mongo::MongoStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use replica::Replica;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "rookery_session";

/// A started replica. It serves until [`Stopper::stop`] or [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if `METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub node_id: String,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Asks a replica to stop; cheap to clone, e.g. into a signal handler.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Running {
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits until the replica has stopped.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)))
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the end.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stopper.stop();
        self.wait().await
    }
}

/// Binds the listener and starts serving in the background of the current
/// actix system. Fails only on what retrying cannot fix: a port in use, an
/// unwritable directory, a malformed database URL.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let node_id = config.node_id();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
    let upload_dir = config.upload_dir();
    std::fs::create_dir_all(upload_dir.join(http::avatar::AVATAR_DIR))
        .with_context(|| format!("creating UPLOAD_DIR {}", upload_dir.display()))?;
    let store = open_store(&config).await?;
    let broker = config.cluster()?;
    let api_keys = config.api_keys()?;
    let cluster_key = config.cluster_key()?;
    if let Some(BrokerTarget::Redis(url)) = &broker {
        // The only broker URL that can be malformed in a way worth failing for.
        RedisBroker::new(url).context("REDIS_URL")?;
    }

    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    // Served from the start, the standby included: a replica waiting for
    // its database is what an operator most wants to see.
    let metrics = match config.metrics_addr {
        Some(metrics_addr) => {
            let listener = TcpListener::bind(metrics_addr)
                .with_context(|| format!("binding METRICS_ADDR {metrics_addr}"))?;
            let bound = listener.local_addr()?;
            let server = http::metrics::server(listener)?;
            let handle = server.handle();
            actix_web::rt::spawn(server);
            tracing::info!(addr = %bound, "metrics at /metrics");
            Some((bound, handle))
        }
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|(bound, _)| *bound);
    tracing::info!(
        %addr,
        node = %node_id,
        store = %store.describe(),
        cluster = broker.as_ref().map_or("none (single replica)", BrokerTarget::name),
        "rookery listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let replica = Replica {
        config,
        node_id: node_id.clone(),
        store,
        broker,
        api_keys,
        room_threads: Default::default(),
        cluster_key,
    };
    let task = actix_web::rt::spawn(async move {
        let result = replica.run(listener, stop_rx).await;
        if let Some((_, handle)) = metrics {
            handle.stop(true).await;
        }
        result
    });
    Ok(Running {
        addr,
        metrics_addr,
        node_id,
        stopper: Stopper(Arc::new(stop_tx)),
        task,
    })
}

/// `rookery create-user`: makes `name` an operator's account with
/// `password` in the configured store (see [`crate::config::Command`]).
pub async fn create_operator_account(
    config: &Config,
    name: &str,
    password: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::chat::names::is_valid_user_name(name),
        "{name:?} is not a valid name: 1-32 letters, digits, '_', '-' or '.'"
    );
    anyhow::ensure!(
        password.chars().count() >= http::auth::MIN_PASSWORD_CHARS
            && password.len() <= http::auth::MAX_PASSWORD_BYTES,
        "the password needs {} to {} characters",
        http::auth::MIN_PASSWORD_CHARS,
        http::auth::MAX_PASSWORD_BYTES
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
    let store = open_store(config).await?;
    store.migrate().await.context("preparing the database")?;
    let hash = http::auth::hash_password(password)
        .map_err(|err| anyhow::anyhow!("hashing the password: {err}"))?;
    store
        .put_operator_account(name, &hash)
        .await
        .context("writing the account")?;
    Ok(())
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let backend: Arc<dyn Store> = match config.mongo() {
        Some(mongo) => Arc::new(
            MongoStore::connect(&mongo)
                .await
                .context("configuring MongoDB (check MONGO_URL / DB_HOST)")?,
        ),
        None => {
            let path = config.data_dir.join("rookery.db");
            Arc::new(
                SqliteStore::open_with(&path, config.sqlite_synchronous)
                    .with_context(|| format!("opening {}", path.display()))?,
            )
        }
    };
    Ok(Arc::new(Bounded::new(backend)))
}
