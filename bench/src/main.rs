//! `rookery-bench`: drives a Rookery server, the socket.io peer in
//! `bench/peers/socketio`, or Sockudo (a Rust Pusher server), with many WebSocket connections, records every
//! round trip in an HDR histogram, prints a table and writes JSON.
//!
//! - [`peer`]: the servers' protocols behind one connection type.
//! - [`scenarios`]: linker, fanout, idle, cluster.
//! - [`report`]: histograms, the progress line, the table and JSON rows.
//! - [`plot`]: latency plots (PNG) from the JSON rows.
//! - [`verify`]: an operator's check of a live deployment (nothing lost,
//!   repeated or out of order while replicas restart).
//!
//! It only ever connects to loopback addresses. `scripts/bench.sh` runs
//! every scenario against both servers and writes `BENCHMARKS.md`'s data.

mod peer;
mod plot;
mod report;
mod scenarios;
mod verify;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use peer::{PeerKind, Target};
use report::{Progress, Row};
use scenarios::Fleet;

#[derive(Parser)]
#[command(about = "Load generator for Rookery and its peers (socket.io, Sockudo)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Clone)]
struct Common {
    /// The server: http://127.0.0.1:PORT (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Which protocol the target speaks.
    #[arg(long, value_enum, default_value = "rookery")]
    peer: PeerKind,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 500.0)]
    ramp: f64,
    /// Loopback source addresses to spread connections over (127.0.0.1..N);
    /// each address pair allows about 28k connections.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Append the rows to this JSON file (an array).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Name the rows carry instead of the peer's, e.g. `rookery-before`
    /// for an older build measured in the same run.
    #[arg(long)]
    label: Option<String>,
    /// The server's process id: its CPU time over each measured window
    /// (logins excluded) and, for idle, its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Scenario {
    /// Checks a live deployment while you restart its replicas: clients in
    /// one room send for --seconds, reconnecting and resuming as needed;
    /// then every acked message must have reached every client once, in
    /// order, and every client must see the others online. Exits non-zero
    /// otherwise.
    Verify {
        /// The load balancer (or a replica): http://127.0.0.1:PORT.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        /// The Host header the load balancer routes by, e.g.
        /// app.docker.localhost.
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Each client sends one message this often.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// After the sending time: how long clients may take to settle.
        #[arg(long, default_value_t = 60)]
        settle_seconds: u64,
        #[arg(long, default_value = "verify")]
        room: String,
    },
    /// Every connection messages itself (direct) every --interval-ms.
    Linker {
        #[command(flatten)]
        common: Common,
        /// Connection counts to measure, one after the other.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        connections: Vec<usize>,
        /// Ask for acks (reliable) or not (fast).
        #[arg(long, value_enum, default_value = "reliable")]
        mode: Mode,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        size: usize,
        /// Unconfirmed messages per connection before sends are skipped.
        #[arg(long, default_value_t = 100)]
        window: u64,
        /// Name the rows' scenario (default: linker, or linker-<interval>ms),
        /// e.g. `mongo` for the same load on another store.
        #[arg(long)]
        scenario: Option<String>,
    },
    /// One room of --members; one member sends at each of --rates in turn.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, value_delimiter = ',', default_value = "10,50,100,200,400,800")]
        rates: Vec<f64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 5)]
        step_seconds: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Publish through Rookery's server API with this key (one of the
        /// server's API_KEYS) instead of a member's WebSocket.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Idle connections: server memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_delimiter = ',', default_value = "10000")]
        connections: Vec<usize>,
        /// Distinct users the connections share.
        #[arg(long, default_value_t = 200)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        hold_seconds: u64,
    },
    /// Members over several replicas; cross-replica latency.
    Cluster {
        #[command(flatten)]
        common: Common,
        /// More replicas of the same cluster (repeatable).
        #[arg(long = "also", required = true)]
        also: Vec<String>,
        #[arg(long, default_value_t = 100)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per second per sender.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Latency plots (PNG) from JSON results.
    Plot {
        /// The JSON file written by the scenarios.
        results: PathBuf,
        /// Where the PNGs go, one per scenario.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// A TrueType font for the labels.
        #[arg(
            long,
            default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
        )]
        font: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    Reliable,
    Fast,
}

fn fleet(common: &Common, also: &[String]) -> anyhow::Result<Fleet> {
    Ok(Fleet {
        target: Target::parse(common.peer, &common.target)?,
        others: also
            .iter()
            .map(|url| Target::parse(common.peer, url))
            .collect::<anyhow::Result<_>>()?,
        sources: (1..=common.sources.max(1))
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect(),
        ramp_per_s: common.ramp,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        progress: Arc::new(Progress::default()),
        cookies: Default::default(),
        label: common.label.clone(),
        server_pid: common.server_pid,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Linker { common, .. } | Scenario::Cluster { common, .. } = &cli.scenario {
        anyhow::ensure!(
            common.peer != PeerKind::Sockudo,
            "the Pusher protocol has no direct messages or acks: Sockudo runs fanout and idle"
        );
    }
    if let Scenario::Fanout {
        common,
        api_key: Some(_),
        ..
    } = &cli.scenario
    {
        anyhow::ensure!(
            common.peer == PeerKind::Rookery,
            "--api-key publishes through Rookery's server API, which only Rookery has"
        );
    }
    let (common, rows) = match cli.scenario {
        Scenario::Plot { results, out, font } => return plot::plot_all(&results, &out, &font),
        Scenario::Verify {
            target,
            host,
            clients,
            seconds,
            interval_ms,
            settle_seconds,
            room,
        } => {
            let verify = verify::Verify {
                target,
                host,
                clients,
                duration: Duration::from_secs(seconds),
                interval: Duration::from_millis(interval_ms),
                settle: Duration::from_secs(settle_seconds),
                room,
            };
            return verify.run().await;
        }
        Scenario::Linker {
            common,
            connections,
            mode,
            interval_ms,
            seconds,
            size,
            window,
            scenario,
        } => {
            let fleet = fleet(&common, &[])?;
            let mut rows = Vec::new();
            for count in connections {
                let _progress = fleet.progress.show(format!("linker {count}"), count as u64);
                let linker = scenarios::Linker {
                    connections: count,
                    reliable: matches!(mode, Mode::Reliable),
                    interval: Duration::from_millis(interval_ms),
                    duration: Duration::from_secs(seconds),
                    size,
                    window,
                    name: scenario.clone(),
                };
                rows.push(linker.run(&fleet).await?);
                fleet
                    .progress
                    .connected
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
            (common, rows)
        }
        Scenario::Fanout {
            common,
            members,
            rates,
            step_seconds,
            size,
            api_key,
        } => {
            let fleet = fleet(&common, &[])?;
            let _progress = fleet.progress.show("fanout".into(), members as u64);
            let fanout = scenarios::Fanout {
                members,
                rates,
                step: Duration::from_secs(step_seconds),
                size,
                api_key,
            };
            let rows = fanout.run(&fleet).await?;
            (common, rows)
        }
        Scenario::Idle {
            common,
            connections,
            users,
            hold_seconds,
        } => {
            let fleet = fleet(&common, &[])?;
            let mut rows = Vec::new();
            for count in connections {
                let _progress = fleet.progress.show(format!("idle {count}"), count as u64);
                let idle = scenarios::Idle {
                    connections: count,
                    users,
                    hold: Duration::from_secs(hold_seconds),
                };
                rows.push(idle.run(&fleet).await?);
                fleet
                    .progress
                    .connected
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
            (common, rows)
        }
        Scenario::Cluster {
            common,
            also,
            members,
            senders,
            rate,
            seconds,
            size,
        } => {
            let fleet = fleet(&common, &also)?;
            let _progress = fleet.progress.show("cluster".into(), members as u64);
            let cluster = scenarios::Cluster {
                members,
                senders,
                rate,
                duration: Duration::from_secs(seconds),
                size,
            };
            (common, vec![cluster.run(&fleet).await?])
        }
    };
    report::print_table(&rows);
    if let Some(path) = &common.json {
        append_json(path, &rows)?;
    }
    Ok(())
}

fn append_json(path: &PathBuf, rows: &[Row]) -> anyhow::Result<()> {
    let mut all: Vec<serde_json::Value> = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => Vec::new(),
    };
    for row in rows {
        all.push(serde_json::to_value(row)?);
    }
    std::fs::write(path, serde_json::to_string_pretty(&all)?)?;
    Ok(())
}
