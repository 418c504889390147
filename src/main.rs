use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    return_large_allocations();
    small_pages_unless_asked();
    let mut config = rookery::Config::parse();
    if let Some(rookery::config::Command::CreateUser { name }) = config.command.take() {
        let password = match std::env::var("ROOKERY_PASSWORD") {
            Ok(password) => password,
            Err(_) => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        rookery::server::create_operator_account(&config, &name, &password).await?;
        println!("{name} is an operator's account");
        return Ok(());
    }
    // Decided once, so the logs and the replica name the same node.
    config.node_id = Some(config.node_id());
    let format = config.log_format;
    rookery::logging::init(format, config.node_id.as_deref().unwrap_or_default());
    let running = rookery::start(config).await?;
    // Scripts and tests started with PORT=0 read the chosen port from here;
    // as a log line in JSON mode, so every line of the output is JSON.
    let url = format!("http://{}", running.addr);
    let metrics = running
        .metrics_addr
        .map(|addr| format!(", metrics on http://{addr}/metrics"))
        .unwrap_or_default();
    match format {
        rookery::config::LogFormat::Text => println!("listening on {url}{metrics}"),
        rookery::config::LogFormat::Json => tracing::info!(%url, "listening on {url}{metrics}"),
    }
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

/// Transparent huge pages off for the process, unless
/// `MIMALLOC_ALLOW_THP=1`. mimalloc commits its arenas up front, so with
/// huge pages the first byte a connection touches in a 2 MiB range makes
/// all of it resident: an idle connection cost 24 KB instead of 16 KB
/// (BENCHMARKS.md, per core). Huge pages buy about 10 % more messages per
/// second at saturation, which an operator may prefer.
fn small_pages_unless_asked() {
    #[cfg(target_os = "linux")]
    if std::env::var("MIMALLOC_ALLOW_THP").as_deref() != Ok("1") {
        // SAFETY: prctl only sets a flag of this process, checked by the
        // kernel at each page fault from now on, existing mappings included.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

/// For what still uses glibc's malloc (SQLite, the C libraries): serves
/// allocations of 4 MiB and more straight from the kernel, and gives them
/// back when freed. glibc otherwise raises that threshold after
/// the first large free and keeps such blocks in each thread's arena: every
/// password hash (argon2 works in 19 MiB) then stayed resident, 10 MB per
/// login, 460 MB after 40 sequential ones.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}
