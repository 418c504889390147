//! What a replica counts and times, in the Prometheus text format.
//!
//! One registry per process: the counters sit deep in the message path
//! (store writer, broker driver, rooms, sessions), and threading a handle
//! through all of them would buy nothing a process-wide one lacks; a
//! process is a replica. Every labelled family is created with all of its
//! label values, so a series exists (at 0) before its first event: the
//! dashboard never queries a name the endpoint does not have yet.
//! Labels are small fixed sets, never a room or user name.
//!
//! The names, types and meanings are listed in docs/METRICS.md; the
//! endpoint is served on its own address (`METRICS_ADDR`) by
//! `http::metrics`.

mod family;
mod labels;

pub use family::Family;
pub use labels::{close, dropped, hook, login, mode, resume, STORE_OPERATIONS};

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::protocol::{ErrorCode, FRAME_KINDS};

/// Seconds, from half a millisecond (a commit on a quiet machine) to ten
/// (twice the store's operation bound).
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Messages per store commit.
const BATCH: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];
/// Bytes waiting in a connection's outbox, up to its 16 MiB limit.
const OUTBOX_BYTES: &[f64] = &[
    0.0, 1024.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

pub struct Metrics {
    registry: Registry,
    pub connections_open: IntGauge,
    pub connections_opened: IntCounter,
    pub connections_closed: Family,
    pub logins: Family,
    pub frames_received: Family,
    pub frames_rate_limited: IntCounter,
    pub errors_sent: Family,
    pub messages_accepted: Family,
    pub messages_stored: Family,
    pub messages_delivered: Family,
    pub offline_fetched: IntCounter,
    pub ack_seconds: Histogram,
    pub delivery_seconds: Histogram,
    pub store_commit_seconds: Histogram,
    pub store_batch_messages: Histogram,
    pub store_backlog_messages: IntGauge,
    pub store_errors: Family,
    pub outbox_bytes: Histogram,
    pub broker_connected: IntGauge,
    pub broker_reconnects: IntCounter,
    pub broker_published: IntCounter,
    pub broker_received: IntCounter,
    pub broker_channels_refused: IntCounter,
    pub broker_dropped: Family,
    pub gap_fills: IntCounter,
    pub gap_skipped: IntCounter,
    pub resumes: Family,
    pub presence_expired: IntCounter,
    pub webhook_calls: IntCounterVec,
    pub webhook_seconds: HistogramVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// An `error` frame went to a client.
pub fn error_sent(code: crate::protocol::ErrorCode) {
    get().errors_sent.inc(code.as_str());
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        // RSS, open descriptors, CPU seconds, threads: `process_*`.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("one process collector");
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let histogram =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                    .expect("valid metric");
            registry
                .register(Box::new(histogram.clone()))
                .expect("unique metric");
            histogram
        };
        let family = |name: &str, help: &str, label: &str, values: &[&'static str]| {
            Family::new(&registry, name, help, label, values)
        };
        let error_codes: Vec<&'static str> =
            ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        let frame_kinds: Vec<&'static str> = FRAME_KINDS
            .iter()
            .copied()
            .chain(["invalid", "binary"])
            .collect();

        let webhook_calls = IntCounterVec::new(
            Opts::new(
                "rookery_webhook_calls_total",
                "Webhook calls, by hook and result (ok, refused, failed).",
            ),
            &["hook", "result"],
        )
        .expect("valid metric");
        let webhook_seconds = HistogramVec::new(
            HistogramOpts::new(
                "rookery_webhook_seconds",
                "Time a webhook took to answer, by hook.",
            )
            .buckets(SECONDS.to_vec()),
            &["hook"],
        )
        .expect("valid metric");
        for name in hook::ALL {
            webhook_seconds.with_label_values(&[name]);
            for result in hook::RESULTS {
                webhook_calls.with_label_values(&[name, result]);
            }
        }
        registry
            .register(Box::new(webhook_calls.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(webhook_seconds.clone()))
            .expect("unique metric");

        Self {
            connections_open: gauge("rookery_connections_open", "WebSocket connections open now."),
            connections_opened: counter("rookery_connections_opened_total", "WebSocket connections opened."),
            connections_closed: family(
                "rookery_connections_closed_total",
                "WebSocket connections closed, by reason.",
                "reason",
                close::ALL,
            ),
            logins: family("rookery_logins_total", "Logins and registrations, by result.", "result", login::ALL),
            frames_received: family(
                "rookery_frames_received_total",
                "Client frames received, by type (invalid: not a known frame).",
                "type",
                &frame_kinds,
            ),
            frames_rate_limited: counter(
                "rookery_frames_rate_limited_total",
                "Client frames dropped for the per-connection rate limit.",
            ),
            errors_sent: family(
                "rookery_errors_sent_total",
                "Error frames sent to clients, by code.",
                "code",
                &error_codes,
            ),
            messages_accepted: family(
                "rookery_messages_accepted_total",
                "Messages a room took for storing, by delivery mode.",
                "mode",
                mode::ALL,
            ),
            messages_stored: family(
                "rookery_messages_stored_total",
                "Messages this replica stored, by delivery mode.",
                "mode",
                mode::ALL,
            ),
            messages_delivered: family(
                "rookery_messages_delivered_total",
                "Messages handed to local connections (one per member), by delivery mode.",
                "mode",
                mode::ALL,
            ),
            offline_fetched: counter(
                "rookery_offline_messages_fetched_total",
                "Messages kept for an offline user and fetched by them.",
            ),
            ack_seconds: histogram(
                "rookery_ack_seconds",
                "From a reliable message reaching its room to its ack (stored).",
                SECONDS,
            ),
            delivery_seconds: histogram(
                "rookery_delivery_seconds",
                "From a message being stored (on any replica) to its fan-out here.",
                SECONDS,
            ),
            store_commit_seconds: histogram(
                "rookery_store_commit_seconds",
                "Time of one store write of messages (a group commit on SQLite, an insert on MongoDB).",
                SECONDS,
            ),
            store_batch_messages: histogram(
                "rookery_store_batch_messages",
                "Messages written by one store commit.",
                BATCH,
            ),
            store_backlog_messages: gauge(
                "rookery_store_backlog_messages",
                "Messages waiting for the store now (refused as overloaded past STORE_QUEUE).",
            ),
            store_errors: family(
                "rookery_store_errors_total",
                "Store operations that failed or timed out, by operation.",
                "operation",
                STORE_OPERATIONS,
            ),
            outbox_bytes: histogram(
                "rookery_outbox_bytes",
                "Bytes waiting to be written to a connection, sampled at each heartbeat.",
                OUTBOX_BYTES,
            ),
            broker_connected: gauge(
                "rookery_broker_connected",
                "1 while the cluster broker is connected (always 0 for a single replica).",
            ),
            broker_reconnects: counter(
                "rookery_broker_reconnects_total",
                "Broker connections lost and made again.",
            ),
            broker_published: counter("rookery_broker_published_total", "Events published to the broker."),
            broker_received: counter(
                "rookery_broker_received_total",
                "Events received from other replicas through the broker.",
            ),
            broker_channels_refused: counter(
                "rookery_broker_channels_refused_total",
                "Channels no broker takes, refused before reaching it (should stay 0).",
            ),
            broker_dropped: family(
                "rookery_broker_dropped_total",
                "Messages from the broker dropped unread, by reason (size, signature, undecodable).",
                "reason",
                dropped::ALL,
            ),
            gap_fills: counter(
                "rookery_gap_fills_total",
                "Store reads for messages another replica stored but the broker did not bring.",
            ),
            gap_skipped: counter(
                "rookery_gap_skipped_seqs_total",
                "Seqs the store never held, skipped over by a room's sequence (should stay 0).",
            ),
            resumes: family(
                "rookery_resumes_total",
                "Rooms resumed after a reconnect, by result (recovered, cut at the replay window, failed).",
                "result",
                resume::ALL,
            ),
            presence_expired: counter(
                "rookery_presence_expired_total",
                "Other replicas' presence entries dropped for missing heartbeats.",
            ),
            webhook_calls,
            webhook_seconds,
            registry,
        }
    }

    /// Counts a webhook call that took `took`.
    pub fn webhook(&self, name: &str, result: &str, took: Duration) {
        self.webhook_calls.with_label_values(&[name, result]).inc();
        self.webhook_seconds
            .with_label_values(&[name])
            .observe(took.as_secs_f64());
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_labelled_series_exists_before_its_first_event() {
        let text = get().render();
        for line in [
            r#"rookery_connections_closed_total{reason="slow"} "#,
            r#"rookery_errors_sent_total{code="overloaded"} "#,
            r#"rookery_frames_received_total{type="send"} "#,
            r#"rookery_webhook_calls_total{hook="auth",result="failed"} "#,
            r#"rookery_store_errors_total{operation="append"} "#,
            "process_resident_memory_bytes ",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
