//! `/healthz` (the process runs) and `/readyz` (it can serve: the store answers).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::AppState;

pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    let cluster = match state.cluster.status() {
        Some((adapter, connected)) => json!({ "adapter": adapter, "connected": connected }),
        None => json!({ "adapter": "none" }),
    };
    HttpResponse::Ok().json(json!({ "status": "ok", "node": state.node_id, "cluster": cluster }))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "ready": false,
            "node": state.node_id,
            "reason": "draining: shutting down",
        }));
    }
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "ready": true, "node": state.node_id })),
        Err(err) => {
            // The cause names hosts and databases: it goes to the log, not
            // to whoever asks the public port.
            tracing::warn!(error = %err, "not ready: the database does not answer");
            HttpResponse::ServiceUnavailable().json(json!({
                "ready": false,
                "node": state.node_id,
                "reason": "the database does not answer",
            }))
        }
    }
}

/// What the standby app knows while the replica waits for its database.
struct Standby {
    node_id: String,
    reason: String,
}

/// Serves `listener` while the replica cannot serve yet: alive, not ready,
/// and a 503 for everything else.
pub fn standby_server(
    listener: std::net::TcpListener,
    node_id: String,
    reason: String,
) -> std::io::Result<actix_web::dev::Server> {
    let standby = web::Data::new(Standby { node_id, reason });
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(standby.clone())
            .route("/healthz", web::get().to(standby_live))
            .route("/readyz", web::get().to(standby_ready))
            .default_service(web::to(standby_unavailable))
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn standby_live(standby: web::Data<Standby>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "starting", "node": standby.node_id }))
}

async fn standby_ready(standby: web::Data<Standby>) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({
        "ready": false,
        "node": standby.node_id,
        "reason": standby.reason,
    }))
}

async fn standby_unavailable(standby: web::Data<Standby>) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
        .body(format!(
            "Rookery is starting: {}. Try again shortly.",
            standby.reason
        ))
}
