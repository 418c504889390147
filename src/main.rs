use clap::Parser;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = rookery::Config::parse();
    let running = rookery::start(config).await?;
    // Scripts and tests started with PORT=0 read the chosen port from here.
    println!("listening on http://{}", running.addr);
    let stopper = running.stopper();
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stopper.stop();
    });
    running.wait().await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
