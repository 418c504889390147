//! `/healthz` (the process runs) and `/readyz` (it can serve: the store answers).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "node": state.node_id }))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "ready": true, "node": state.node_id })),
        Err(err) => HttpResponse::ServiceUnavailable().json(json!({
            "ready": false,
            "node": state.node_id,
            "reason": err.to_string(),
        })),
    }
}
