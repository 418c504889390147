//! The Prometheus endpoint, on its own listener (`METRICS_ADDR`): scraped
//! by the monitoring network, never routed from the public one.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::metrics;

/// Serves `GET /metrics` on `listener` with one worker.
pub fn server(listener: TcpListener) -> std::io::Result<Server> {
    Ok(
        HttpServer::new(|| App::new().route("/metrics", web::get().to(render)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)?
            .run(),
    )
}

async fn render() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(metrics::get().render())
}
