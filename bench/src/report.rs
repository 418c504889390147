//! Latency histograms, the progress line, and results as a table and JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Round trips in microseconds, up to a minute, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
    histogram.record(micros).expect("clamped into bounds");
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One measured point: a scenario, a server, a setting (connections, rate).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    pub peer: String,
    /// What varies within the scenario, e.g. `connections=1000 reliable`.
    pub setting: String,
    /// The number that setting is plotted against.
    pub x: f64,
    /// Messages per second the tool tried to send, and delivered.
    pub offered_per_s: f64,
    pub delivered_per_s: f64,
    /// Sends skipped because the connection's window of unconfirmed
    /// messages was full: the server was not keeping up.
    pub skipped: u64,
    /// Refused at once by the server (`overloaded`): not counted as sent.
    pub refused: u64,
    /// Sent but never delivered within the drain time.
    pub missing: u64,
    pub delivery: Latency,
    pub ack: Latency,
    /// Idle scenario: server memory per connection, in bytes.
    pub rss_per_connection: Option<f64>,
    /// The server's CPU time over the measured window, and per 1000
    /// messages delivered in it: what a message costs, whatever the cores.
    pub cpu_seconds: Option<f64>,
    pub cpu_ms_per_1000: Option<f64>,
}

impl Row {
    pub fn new(scenario: &str, peer: &str, setting: String, x: f64) -> Self {
        Self {
            scenario: scenario.into(),
            peer: peer.into(),
            setting,
            x,
            offered_per_s: 0.0,
            delivered_per_s: 0.0,
            skipped: 0,
            refused: 0,
            missing: 0,
            delivery: Latency::default(),
            ack: Latency::default(),
            rss_per_connection: None,
            cpu_seconds: None,
            cpu_ms_per_1000: None,
        }
    }

    /// Records the server's CPU time over the window `delivered` messages
    /// were delivered in.
    pub fn set_cpu(&mut self, seconds: Option<f64>, delivered: u64) {
        self.cpu_seconds = seconds;
        self.cpu_ms_per_1000 = seconds
            .filter(|_| delivered > 0)
            .map(|seconds| seconds * 1000.0 * 1000.0 / delivered as f64);
    }
}

pub fn print_table(rows: &[Row]) {
    println!(
        "{:<9} {:<8} {:<28} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "scenario",
        "peer",
        "setting",
        "offered/s",
        "deliv/s",
        "p50",
        "p90",
        "p99",
        "max",
        "ack p50",
        "ack p99",
        "missing",
        "B/conn",
        "cpu ms/1k"
    );
    for row in rows {
        println!(
            "{:<9} {:<8} {:<28} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>9} {:>10}",
            row.scenario,
            row.peer,
            row.setting,
            row.offered_per_s,
            row.delivered_per_s,
            row.delivery.p50_ms,
            row.delivery.p90_ms,
            row.delivery.p99_ms,
            row.delivery.max_ms,
            row.ack.p50_ms,
            row.ack.p99_ms,
            row.missing,
            row.rss_per_connection
                .map_or_else(|| "-".into(), |bytes| format!("{bytes:.0}")),
            row.cpu_ms_per_1000
                .map_or_else(|| "-".into(), |ms| format!("{ms:.1}")),
        );
    }
}

/// Counters the progress line reads while a scenario runs.
#[derive(Default)]
pub struct Progress {
    pub connected: AtomicU64,
    pub delivered: AtomicU64,
}

impl Progress {
    /// Prints a line a second to stderr until the returned guard drops.
    pub fn show(self: &Arc<Self>, label: String, target_connections: u64) -> ProgressGuard {
        let progress = self.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = 0;
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let delivered = progress.delivered.load(Ordering::Relaxed);
                eprintln!(
                    "  [{label}] {:>4.0}s connected {}/{} delivered/s {}",
                    started.elapsed().as_secs_f64(),
                    progress.connected.load(Ordering::Relaxed),
                    target_connections,
                    delivered - last
                );
                last = delivered;
            }
        });
        ProgressGuard(task)
    }
}

pub struct ProgressGuard(tokio::task::JoinHandle<()>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
