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
    let mut running = rookery::start(config).await?;
    // Scripts and tests started with PORT=0 read the chosen port from here.
    println!("listening on http://{}", running.addr);
    running.serve().await?;
    Ok(())
}
