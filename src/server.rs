//! Assembling a replica: store, actors, HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use actix_session::config::PersistentSession;
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration, Key, SameSite};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context as _;

use crate::chat::registry::Registry;
use crate::cluster::{ClusterAdapter, LocalOnly};
use crate::config::Config;
use crate::http::{self, AppState};
use crate::store::session::StoreSessions;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "rookery_session";

/// A started replica; [`Running::serve`] or [`Running::spawn`] makes it serve.
pub struct Running {
    pub addr: SocketAddr,
    pub node_id: String,
    server: Option<Server>,
    handle: ServerHandle,
    room_arbiters: Vec<Arbiter>,
}

impl Running {
    /// Serves until the server stops (on SIGINT/SIGTERM or [`Running::stop`]).
    pub async fn serve(&mut self) -> std::io::Result<()> {
        match self.server.take() {
            Some(server) => server.await,
            None => Ok(()),
        }
    }

    /// Serves in the background of the current actix system.
    pub fn spawn(&mut self) {
        if let Some(server) = self.server.take() {
            actix_web::rt::spawn(server);
        }
    }

    /// Stops accepting, lets in-flight requests finish, and stops the room threads.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        for arbiter in self.room_arbiters {
            arbiter.stop();
        }
    }
}

/// Opens the store and binds the listener. Must run inside an actix system.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let node_id = config.node_id();
    let upload_dir = config.upload_dir();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
    std::fs::create_dir_all(upload_dir.join(http::avatar::AVATAR_DIR))
        .with_context(|| format!("creating UPLOAD_DIR {}", upload_dir.display()))?;

    let db_path = config.data_dir.join("rookery.db");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?,
    );
    let cookie_key = store
        .secret("session_cookie_key", Key::generate().master().to_vec())
        .await
        .context("loading the session cookie key")?;
    let cookie_key =
        Key::try_from(cookie_key.as_slice()).context("stored cookie key is too short")?;

    let cluster: Arc<dyn ClusterAdapter> = Arc::new(LocalOnly);
    let workers = config.worker_count();
    let room_arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
    let registry = Registry::new(
        store.clone(),
        cluster,
        room_arbiters.iter().map(Arbiter::handle).collect(),
    )
    .start();

    let state = web::Data::new(AppState {
        store: store.clone(),
        registry,
        config: Arc::new(config.clone()),
        node_id: node_id.clone(),
    });
    let sessions = StoreSessions::new(store);
    let session_ttl = Duration::hours(i64::from(config.session_ttl_hours));
    let cookie_secure = config.cookie_secure;
    let http_server = HttpServer::new(move || {
        let session_middleware = SessionMiddleware::builder(sessions.clone(), cookie_key.clone())
            .cookie_name(SESSION_COOKIE.into())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_secure(cookie_secure)
            .session_lifecycle(PersistentSession::default().session_ttl(session_ttl))
            .build();
        let upload_dir = upload_dir.clone();
        App::new()
            .app_data(state.clone())
            .wrap(session_middleware)
            .wrap(http::security_headers())
            .wrap(middleware::Compress::default())
            .wrap(middleware::Logger::new("%r %s %b %Dms").exclude("/healthz"))
            .configure(move |cfg| http::routes(cfg, &upload_dir))
    })
    .workers(workers)
    .shutdown_timeout(config.shutdown_timeout)
    .bind((config.host.as_str(), config.port))
    .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let addr = *http_server
        .addrs()
        .first()
        .context("the server bound no address")?;
    let server = http_server.run();
    tracing::info!(%addr, node = %node_id, data_dir = %config.data_dir.display(), "rookery listening");
    Ok(Running {
        addr,
        node_id,
        handle: server.handle(),
        server: Some(server),
        room_arbiters,
    })
}
