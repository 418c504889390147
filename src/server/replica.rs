//! One replica's run: waiting for the store behind a standby app, then the
//! actors and the HTTP server on the same socket, and the drain at the end.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use actix::prelude::*;
use actix_session::config::PersistentSession;
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration, Key, SameSite};
use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context as _;
use tokio::sync::watch;

use super::SESSION_COOKIE;
use crate::app::{self, AppState};
use crate::chat::registry::{DrainAll, DrainStatus, Policies, Registry, RoomThreads};
use crate::cluster::nats::NatsBroker;
use crate::cluster::rabbitmq::RabbitBroker;
use crate::cluster::redis::RedisBroker;
use crate::cluster::{self, Broker, ClusterHandle, Seal};
use crate::config::{BrokerTarget, Config};
use crate::hooks::Hooks;
use crate::http;
use crate::store::backlog::{self, Backlog};
use crate::store::session::StoreSessions;
use crate::store::{now_millis, Retention, Store, PRUNE_BATCH};

/// First pause between attempts to reach the database; doubles up to the max.
const STORE_RETRY_FIRST: StdDuration = StdDuration::from_millis(500);
const STORE_RETRY_MAX: StdDuration = StdDuration::from_secs(10);
/// How often a draining replica looks whether its connections have left.
const DRAIN_POLL: StdDuration = StdDuration::from_millis(100);
/// The most a drain waits for the last cluster publishes to go out.
const CLUSTER_FLUSH_TIMEOUT: StdDuration = StdDuration::from_secs(2);

pub(super) struct Replica {
    pub(super) config: Config,
    pub(super) node_id: String,
    pub(super) store: Arc<dyn Store>,
    pub(super) broker: Option<BrokerTarget>,
    /// Checked at start; none: no server API.
    pub(super) api_keys: Vec<crate::config::ApiKey>,
    /// Where rooms run: the HTTP workers add themselves as they start.
    pub(super) room_threads: RoomThreads,
    /// `CLUSTER_KEY`, if configured; else the store keeps one.
    pub(super) cluster_key: Option<Vec<u8>>,
}

/// What a replica needs from its store before it serves.
struct Secrets {
    cookie_key: Key,
    /// For the cluster's messages; `None` for a single replica.
    seal: Option<Seal>,
}

fn broker(target: &BrokerTarget) -> Box<dyn Broker> {
    match target {
        BrokerTarget::Redis(url) => {
            Box::new(RedisBroker::new(url).expect("the URL was checked at start"))
        }
        BrokerTarget::Rabbitmq(url) => Box::new(RabbitBroker::new(url)),
        BrokerTarget::Nats(url) => Box::new(NatsBroker::new(url)),
    }
}

/// What the HTTP handlers share with the rest of the replica.
struct Parts {
    registry: Addr<Registry>,
    cluster: ClusterHandle,
    hooks: Arc<Hooks>,
    budgets: Arc<app::budget::Budgets>,
}

impl Replica {
    pub(super) async fn run(
        self,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let Some(Secrets { cookie_key, seal }) = self.wait_for_store(&listener, &mut stop).await?
        else {
            return Ok(());
        };

        let cluster = match (&self.broker, seal) {
            (Some(target), Some(seal)) => {
                ClusterHandle::start(self.node_id.clone(), seal, target.name(), broker(target))
            }
            _ => ClusterHandle::local(),
        };
        let hooks = Hooks::from_config(&self.config);
        let budgets = Arc::new(app::budget::Budgets::new(
            self.config.user_rate_limit,
            self.config.user_rate_burst,
        ));
        let policies = Policies {
            node: self.node_id.clone(),
            hooks: hooks.clone(),
            admins: self.config.admin_users.iter().cloned().collect(),
            single_session: self.config.single_session,
            budgets: budgets.clone(),
        };
        let registry = Registry::new(
            self.store.clone(),
            cluster.clone(),
            self.room_threads.clone(),
            policies,
            Backlog::new(self.config.store_queue.max(1), backlog::MAX_BYTES),
        )
        .start();
        let draining = Arc::new(AtomicBool::new(false));
        let parts = Parts {
            registry: registry.clone(),
            cluster: cluster.clone(),
            hooks,
            budgets,
        };
        let server = self.app_server(listener, parts, cookie_key, draining.clone())?;
        let handle = server.handle();
        let retention = self.config.retention();
        let pruning = (!retention.keeps_everything()).then(|| {
            let every = StdDuration::from_secs(self.config.retention_check_secs.max(1));
            actix_web::rt::spawn(prune_forever(self.store.clone(), retention, every))
        });
        let mut serving = actix_web::rt::spawn(server);
        let result = tokio::select! {
            result = &mut serving => result,
            _ = stop.wait_for(|stop| *stop) => {
                let timeout = StdDuration::from_secs(self.config.shutdown_timeout);
                drain(&registry, &draining, timeout).await;
                handle.stop(true).await;
                cluster.flush(CLUSTER_FLUSH_TIMEOUT).await;
                serving.await
            }
        };
        if let Some(pruning) = pruning {
            pruning.abort();
        }
        result.unwrap_or_else(|join| Err(std::io::Error::other(join)))
    }

    /// Retries until the store is usable and returns the secrets, serving
    /// the standby app meanwhile; `None` if asked to stop first.
    async fn wait_for_store(
        &self,
        listener: &TcpListener,
        stop: &mut watch::Receiver<bool>,
    ) -> std::io::Result<Option<Secrets>> {
        let target = self.store.describe();
        let mut standby: Option<ServerHandle> = None;
        let mut delay = STORE_RETRY_FIRST;
        let key = loop {
            match self.load_secrets().await {
                Ok(key) => break Some(key),
                Err(err) => {
                    tracing::error!(
                        store = %target,
                        error = %err,
                        retry_in = ?delay,
                        "the database is not reachable; not ready until it is"
                    );
                    if standby.is_none() {
                        let server = http::health::standby_server(
                            listener.try_clone()?,
                            self.node_id.clone(),
                            // Where the database is stays in the log
                            // above: this is served on the public port.
                            "waiting for the database".into(),
                        )?;
                        standby = Some(server.handle());
                        actix_web::rt::spawn(server);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stop| *stop) => break None,
            }
            delay = (delay * 2).min(STORE_RETRY_MAX);
        };
        if let Some(standby) = standby {
            standby.stop(false).await;
        }
        if key.is_some() {
            tracing::info!(store = %target, "database ready");
        }
        Ok(key)
    }

    async fn load_secrets(&self) -> anyhow::Result<Secrets> {
        self.store.migrate().await?;
        let key = self
            .store
            .secret("session_cookie_key", Key::generate().master().to_vec())
            .await?;
        let cookie_key =
            Key::try_from(key.as_slice()).context("the stored cookie key is too short")?;
        let seal = match (&self.broker, &self.cluster_key) {
            (None, _) => None,
            (Some(_), Some(key)) => Some(Seal::new(key)),
            // Kept in the database every replica shares, as the cookie
            // key is: the first replica's candidate becomes everyone's.
            (Some(_), None) => Some(Seal::new(
                &self
                    .store
                    .secret("cluster_key", cluster::generate_key())
                    .await?,
            )),
        };
        Ok(Secrets { cookie_key, seal })
    }

    fn app_server(
        &self,
        listener: TcpListener,
        parts: Parts,
        cookie_key: Key,
        draining: Arc<AtomicBool>,
    ) -> std::io::Result<Server> {
        let Parts {
            registry,
            cluster,
            hooks,
            budgets,
        } = parts;
        let room_threads = self.room_threads.clone();
        let config = &self.config;
        let upload_dir = config.upload_dir();
        let state = web::Data::new(AppState {
            store: self.store.clone(),
            registry,
            cluster,
            hooks,
            config: Arc::new(config.clone()),
            node_id: self.node_id.clone(),
            draining,
            throttle: Arc::new(app::throttle::LoginThrottle::new(config)),
            socket_caps: app::admission::SocketCaps::new(config.ws_per_user, config.ws_per_address),
            cookie_key: cookie_key.clone(),
            budgets,
        });
        let api = http::api::Api::new(&self.api_keys, config.api_rate_limit).map(web::Data::new);
        if api.is_some() {
            tracing::info!("server API on at /api/v1");
        }
        let connections = app::admission::Connections::default();
        let max_connections = config.max_connections;
        let body_timeout = StdDuration::from_secs(config.body_timeout_secs.max(1));
        let sessions = StoreSessions::new(self.store.clone());
        let session_ttl = Duration::hours(i64::from(config.session_ttl_hours));
        let cookie_secure = config.cookie_secure;
        Ok(HttpServer::new(move || {
            // Runs once on each worker as it starts (one listener): rooms
            // may run on this thread from now on.
            room_threads.add_current();
            let session_middleware =
                SessionMiddleware::builder(sessions.clone(), cookie_key.clone())
                    .cookie_name(SESSION_COOKIE.into())
                    .cookie_http_only(true)
                    .cookie_same_site(SameSite::Lax)
                    .cookie_secure(cookie_secure)
                    .session_lifecycle(PersistentSession::default().session_ttl(session_ttl))
                    .build();
            let upload_dir = upload_dir.clone();
            let api = api.clone();
            App::new()
                .app_data(state.clone())
                .wrap_fn(move |mut request, service| {
                    // Not the WebSocket upgrade: its body is the chat.
                    if request.method() == actix_web::http::Method::POST {
                        app::admission::body_deadline(&mut request, body_timeout);
                    }
                    service.call(request)
                })
                .wrap(middleware::from_fn(app::admission::over_capacity))
                .wrap(http::security_headers())
                .wrap(middleware::from_fn(http::https_only))
                .wrap(middleware::Compress::default())
                .wrap(middleware::Logger::new("%r %s %b %Dms").exclude("/healthz"))
                .configure(http::health_routes)
                .configure(move |cfg| http::api::routes(cfg, api))
                .service(
                    web::scope("")
                        .wrap(session_middleware)
                        .wrap(middleware::from_fn(http::storage_errors))
                        .wrap(middleware::from_fn(http::same_site_posts))
                        .configure(move |cfg| http::routes(cfg, &upload_dir)),
                )
        })
        .workers(config.worker_count())
        // Without it, a message written right after its ack waits for the
        // client's delayed ACK of the ack (Nagle): 40 ms added to p99 at
        // one message per second.
        .on_connect(move |connection, data| {
            data.insert(connections.accept(max_connections));
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
                // So a WebSocket session can cut a client that stopped reading.
                data.insert(crate::ws::socket::ConnectionFd::of(tcp));
            }
        })
        .shutdown_timeout(config.shutdown_timeout)
        // Signals are the binary's business (see main.rs), so tests and
        // embedders decide when a replica stops.
        .disable_signals()
        .listen(listener)?
        .run())
    }
}

/// Empties a replica before it stops, so its clients lose nothing: it turns
/// not ready (load balancers stop sending new clients), refuses new
/// WebSockets, asks every client to reconnect elsewhere and closes the ones
/// still there after half of `timeout`, then waits until the rooms have
/// stored what they were given.
async fn drain(registry: &Addr<Registry>, draining: &AtomicBool, timeout: StdDuration) {
    draining.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + timeout;
    tracing::info!(
        ?timeout,
        "draining: not ready; clients are asked to reconnect elsewhere"
    );
    if registry
        .send(DrainAll {
            close_after: timeout / 2,
        })
        .await
        .is_err()
    {
        return;
    }
    loop {
        let Ok(progress) = registry.send(DrainStatus).await else {
            return;
        };
        if progress.connections == 0 && progress.rooms == 0 {
            tracing::info!("drained");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                connections = progress.connections,
                rooms = progress.rooms,
                "drain timed out; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Deletes what the retention no longer keeps, every `every`, a batch at a
/// time (a full batch is followed by the next at once). Every replica
/// prunes; deleting what another already deleted costs a lookup.
async fn prune_forever(store: Arc<dyn Store>, retention: Retention, every: StdDuration) {
    loop {
        tokio::time::sleep(every).await;
        let mut total = 0;
        loop {
            match store.prune(retention, now_millis()).await {
                Ok(deleted) => {
                    total += deleted;
                    if deleted < PRUNE_BATCH {
                        break;
                    }
                    // Appends wait behind a prune on the writer: let them in.
                    tokio::time::sleep(StdDuration::from_millis(100)).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not prune old messages; trying again later");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, "pruned messages past the retention");
        }
    }
}
