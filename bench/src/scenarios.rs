//! The scenarios. Each opens its connections (ramped), drives traffic, and
//! returns rows: one per setting it measured.
//!
//! Over 400 lines, kept whole: every scenario is the same few steps (ramp,
//! drive, collect) over the same helpers, and reading them side by side
//! is how one checks that Rookery and its peer are measured alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{stamped_text, Event, Socket, Target};
use crate::report::{histogram, record, Latency, Progress, Row};

/// How long, after the last send, connections wait for what is in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// Logins run this many at a time: Rookery hashes passwords (argon2) on
/// purpose slowly, and the ramp is about connections, not logins.
const LOGIN_CONCURRENCY: usize = 4;

/// What every scenario needs to open connections.
pub struct Fleet {
    pub target: Target,
    /// Extra targets (replicas) for the cluster scenario.
    pub others: Vec<Target>,
    pub sources: Vec<IpAddr>,
    pub ramp_per_s: f64,
    pub http: reqwest::Client,
    pub progress: Arc<Progress>,
    /// Session cookies by user, so each user logs in once per run.
    pub cookies: std::sync::Mutex<HashMap<String, String>>,
    /// The name rows carry instead of the peer's (e.g. an older build).
    pub label: Option<String>,
    /// The server's process, when the tool may read its CPU time and memory.
    pub server_pid: Option<u32>,
}

impl Fleet {
    /// Logs in every distinct user of `users` not logged in yet (cookies
    /// are kept for the fleet's later runs); their cookies by name.
    async fn login_all(
        &self,
        users: &[String],
        target: &Target,
    ) -> anyhow::Result<Arc<HashMap<String, String>>> {
        let known = self.cookies.lock().unwrap().clone();
        let mut missing: Vec<&String> = users.iter().filter(|u| !known.contains_key(*u)).collect();
        missing.sort();
        missing.dedup();
        let fresh: Vec<(String, String)> = futures_util::stream::iter(missing)
            .map(|user| async move {
                let cookie = target.login(&self.http, user).await?;
                Ok::<_, anyhow::Error>((user.clone(), cookie))
            })
            .buffer_unordered(LOGIN_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        let mut cookies = self.cookies.lock().unwrap();
        cookies.extend(fresh);
        Ok(Arc::new(cookies.clone()))
    }

    /// Logs in, then opens one connection per entry of `users` to
    /// `targets[i % len]`, at the ramp rate, each in `room` if given.
    async fn open(
        &self,
        users: &[String],
        targets: &[Target],
        room: Option<&str>,
    ) -> anyhow::Result<Vec<Socket>> {
        let cookies = self.login_all(users, &targets[0]).await?;
        self.connect_all(users, &cookies, targets, room).await
    }

    async fn connect_all(
        &self,
        users: &[String],
        cookies: &Arc<HashMap<String, String>>,
        targets: &[Target],
        room: Option<&str>,
    ) -> anyhow::Result<Vec<Socket>> {
        let pause = Duration::from_secs_f64(1.0 / self.ramp_per_s.max(1.0));
        // Open connections keep reading until every one is open: a ramp can
        // take longer than the server's heartbeat timeout, and a connection
        // that does not answer pings meanwhile would be dropped.
        let (go, ready) = tokio::sync::watch::channel(false);
        let baseline = self.progress.connected.load(Ordering::Relaxed);
        let mut opening = JoinSet::new();
        for (index, user) in users.iter().enumerate() {
            let target = targets[index % targets.len()].clone();
            let source = self.sources[index % self.sources.len()];
            let (user, cookies) = (user.clone(), cookies.clone());
            let room = room.map(str::to_owned);
            let (progress, mut ready) = (self.progress.clone(), ready.clone());
            opening.spawn(async move {
                let (mut socket, id) = target.connect(&user, &cookies[&user], source).await?;
                if let Some(room) = room {
                    socket.send(target.join(&room, &id)).await?;
                    loop {
                        let frame = socket.next().await.context("closed while joining")??;
                        if target.is_joined(&frame) {
                            break;
                        }
                    }
                }
                progress.connected.fetch_add(1, Ordering::Relaxed);
                loop {
                    tokio::select! {
                        _ = async { ready.wait_for(|go| *go).await.map(drop) } => break,
                        frame = socket.next() => {
                            let frame = frame.context("closed while others connect")??;
                            if let (_, Some(reply)) = target.decode(&frame) {
                                socket.send(reply).await?;
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>((index, socket))
            });
            tokio::time::sleep(pause).await;
        }
        // Fail early if a connection fails; otherwise wait for all of them.
        let total = users.len() as u64;
        while self.progress.connected.load(Ordering::Relaxed) - baseline < total {
            if let Some(finished) = opening.try_join_next() {
                finished??;
                anyhow::bail!("a connection ended before the others opened");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        go.send_replace(true);
        let mut sockets: Vec<Option<Socket>> = (0..users.len()).map(|_| None).collect();
        while let Some(opened) = opening.join_next().await {
            let (index, socket) = opened??;
            sockets[index] = Some(socket);
        }
        Ok(sockets
            .into_iter()
            .map(|s| s.expect("every index"))
            .collect())
    }
}

/// What one connection measured.
struct Tally {
    delivery: Histogram<u64>,
    ack: Histogram<u64>,
    sent: u64,
    received: u64,
    skipped: u64,
    refused: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            delivery: histogram(),
            ack: histogram(),
            sent: 0,
            received: 0,
            skipped: 0,
            refused: 0,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.delivery.add(&other.delivery).expect("same bounds");
        self.ack.add(&other.ack).expect("same bounds");
        self.sent += other.sent;
        self.received += other.received;
        self.skipped += other.skipped;
        self.refused += other.refused;
    }
}

/// Linker's published benchmark: every connection sends a message of
/// `size` characters to itself (a direct message) every `interval`, with
/// acks (`reliable`) or without.
pub struct Linker {
    pub connections: usize,
    pub reliable: bool,
    pub interval: Duration,
    pub duration: Duration,
    pub size: usize,
    /// Unconfirmed messages a connection may have before it skips a send.
    pub window: u64,
    /// The rows' scenario name instead of the one the interval gives.
    pub name: Option<String>,
}

impl Linker {
    pub async fn run(&self, fleet: &Fleet) -> anyhow::Result<Row> {
        let users: Vec<String> = (0..self.connections).map(|i| format!("l{i}")).collect();
        let sockets = fleet
            .open(&users, std::slice::from_ref(&fleet.target), None)
            .await?;
        let start = Instant::now() + Duration::from_millis(200);
        let send_until = start + self.duration;
        let cpu = CpuClock::at(fleet.server_pid, start).await;
        let mut running = JoinSet::new();
        for (index, (socket, user)) in sockets.into_iter().zip(users).enumerate() {
            // Spread the connections' send instants over the interval.
            let offset = self
                .interval
                .mul_f64(index as f64 / self.connections as f64);
            let (target, progress) = (fleet.target.clone(), fleet.progress.clone());
            let (interval, size, window, reliable) =
                (self.interval, self.size, self.window, self.reliable);
            running.spawn(async move {
                let (mut tx, mut rx) = socket.split();
                let mut tally = Tally::new();
                let mut ticker = tokio::time::interval_at((start + offset).into(), interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let drain_until = tokio::time::Instant::from(send_until + DRAIN);
                loop {
                    let sending = Instant::now() < send_until;
                    if !sending && tally.received >= tally.sent {
                        break;
                    }
                    tokio::select! {
                        _ = ticker.tick(), if sending => {
                            if tally.sent - tally.received >= window {
                                tally.skipped += 1;
                                continue;
                            }
                            let frame = target.direct(&user, stamped_text(size), reliable);
                            if tx.send(frame).await.is_err() { break; }
                            tally.sent += 1;
                        }
                        frame = rx.next() => {
                            let Some(Ok(frame)) = frame else { break };
                            let event = target.answer(&frame, &mut tx).await;
                            match event {
                                Event::Message { sent } => {
                                    record(&mut tally.delivery, sent.elapsed());
                                    tally.received += 1;
                                    progress.delivered.fetch_add(1, Ordering::Relaxed);
                                }
                                Event::Ack { sent } => record(&mut tally.ack, sent.elapsed()),
                                // Answered, and never coming: the window slot is free.
                                Event::Refused => {
                                    tally.refused += 1;
                                    tally.sent -= 1;
                                }
                                Event::Other => {}
                            }
                        }
                        _ = tokio::time::sleep_until(drain_until) => break,
                    }
                }
                let _ = tx.close().await;
                tally
            });
        }
        let mut total = Tally::new();
        while let Some(tally) = running.join_next().await {
            total.merge(&tally?);
        }
        let cpu_used = cpu.elapsed();
        let mode = if self.reliable { "reliable" } else { "fast" };
        // Linker's own interval is 10 ms; other intervals are other series.
        let scenario = match (&self.name, self.interval.as_millis()) {
            (Some(name), _) => name.clone(),
            (None, 10) => "linker".to_owned(),
            (None, millis) => format!("linker-{millis}ms"),
        };
        let mut row = Row::new(
            &scenario,
            peer_name(fleet),
            format!("connections={} {mode}", self.connections),
            self.connections as f64,
        );
        let seconds = self.duration.as_secs_f64();
        row.offered_per_s = self.connections as f64 / self.interval.as_secs_f64();
        row.delivered_per_s = total.received as f64 / seconds;
        row.skipped = total.skipped;
        row.refused = total.refused;
        row.missing = total.sent.saturating_sub(total.received);
        row.delivery = Latency::of(&total.delivery);
        row.ack = Latency::of(&total.ack);
        row.set_cpu(cpu_used, total.received);
        Ok(row)
    }
}

/// One room of `members`, one of whom sends at each of `rates` in turn;
/// or, with `api_key`, a backend publishing through Rookery's server API.
pub struct Fanout {
    pub members: usize,
    pub rates: Vec<f64>,
    pub step: Duration,
    pub size: usize,
    pub api_key: Option<String>,
}

/// Publishes `text` to `room` through the server API; `Some(took)` when it
/// was stored (201).
async fn publish(
    http: &reqwest::Client,
    target: &Target,
    key: &str,
    room: &str,
    text: String,
) -> Option<Duration> {
    let sent = Instant::now();
    let response = http
        .post(format!(
            "http://{}/api/v1/rooms/{room}/messages",
            target.addr
        ))
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({"system": "bench", "text": text}).to_string())
        .send()
        .await
        .ok()?;
    (response.status() == reqwest::StatusCode::CREATED).then(|| sent.elapsed())
}

impl Fanout {
    pub async fn run(&self, fleet: &Fleet) -> anyhow::Result<Vec<Row>> {
        let users: Vec<String> = (0..self.members).map(|i| format!("f{i}")).collect();
        let sockets = fleet
            .open(&users, std::slice::from_ref(&fleet.target), Some("fanout"))
            .await?;
        let start = Instant::now() + Duration::from_millis(500);
        let steps = self.rates.len();
        let end = start + self.step * steps as u32;
        let step = self.step;
        let step_of = move |sent: Instant| {
            let index = sent.saturating_duration_since(start).as_secs_f64() / step.as_secs_f64();
            (index as usize).min(steps - 1)
        };
        // Member 0 also speaks: a timer task hands it frames to send, so its
        // connection keeps reading like every other member's.
        let (speak, to_send) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let mut to_send = if self.api_key.is_some() {
            None
        } else {
            Some(to_send)
        };
        let (target, size, rates) = (fleet.target.clone(), self.size, self.rates.clone());
        let (api_key, http) = (self.api_key.clone(), fleet.http.clone());
        let acks: Arc<std::sync::Mutex<Vec<Histogram<u64>>>> = Arc::new(std::sync::Mutex::new(
            (0..steps).map(|_| histogram()).collect(),
        ));
        let step_acks = acks.clone();
        // Publishes the API did not store (429, 503, a failed request).
        let refused: Arc<Vec<std::sync::atomic::AtomicU64>> =
            Arc::new((0..steps).map(|_| Default::default()).collect());
        let step_refused = refused.clone();
        // The server's CPU time at each step's start and at the end.
        let server_pid = fleet.server_pid;
        let clock = tokio::spawn(async move {
            let mut readings = Vec::with_capacity(steps + 1);
            for index in 0..=steps {
                tokio::time::sleep_until((start + step * index as u32).into()).await;
                readings.push(server_pid.and_then(cpu_seconds));
            }
            readings
        });
        let speaking = tokio::spawn(async move {
            let mut sent = vec![0u64; rates.len()];
            let mut publishing = JoinSet::new();
            for (index, rate) in rates.iter().enumerate() {
                let step_start = start + step * index as u32;
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut ticker = tokio::time::interval_at(step_start.into(), period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    ticker.tick().await;
                    if Instant::now() >= step_start + step {
                        break;
                    }
                    if let Some(key) = &api_key {
                        // Each publish on its own: the API's answer (the
                        // ack) comes once stored, and many are in flight.
                        let (http, target, key) = (http.clone(), target.clone(), key.clone());
                        let (acks, refused) = (step_acks.clone(), step_refused.clone());
                        publishing.spawn(async move {
                            match publish(&http, &target, &key, "fanout", stamped_text(size)).await
                            {
                                Some(took) => record(&mut acks.lock().unwrap()[index], took),
                                None => {
                                    refused[index].fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                    } else if speak
                        .send(target.send("fanout", stamped_text(size), false))
                        .is_err()
                    {
                        return sent;
                    }
                    sent[index] += 1;
                }
            }
            while publishing.join_next().await.is_some() {}
            sent
        });
        let mut receivers = JoinSet::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            let (target, progress) = (fleet.target.clone(), fleet.progress.clone());
            let mut outgoing = if index == 0 { to_send.take() } else { None };
            receivers.spawn(async move {
                let (mut tx, mut rx) = socket.split();
                let mut tallies: Vec<Histogram<u64>> = (0..steps).map(|_| histogram()).collect();
                let quiet_after = tokio::time::Instant::from(end + DRAIN);
                loop {
                    tokio::select! {
                        Some(frame) = async { outgoing.as_mut()?.recv().await } => {
                            if tx.send(frame).await.is_err() { break; }
                        }
                        frame = rx.next() => {
                            let Some(Ok(frame)) = frame else { break };
                            let event = target.answer(&frame, &mut tx).await;
                            if let Event::Message { sent } = event {
                                record(&mut tallies[step_of(sent)], sent.elapsed());
                                progress.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ = tokio::time::sleep_until(quiet_after) => break,
                    }
                }
                tallies
            });
        }
        let sent = speaking.await?;
        let readings = clock.await?;
        let mut merged: Vec<Histogram<u64>> = (0..steps).map(|_| histogram()).collect();
        while let Some(done) = receivers.join_next().await {
            let tallies = done?;
            for (total, tally) in merged.iter_mut().zip(&tallies) {
                total.add(tally).expect("same bounds");
            }
        }
        // Members who receive each message: Pusher skips the sender.
        let receivers = self.members - usize::from(!fleet.target.echoes());
        let members = receivers as f64;
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        Ok(self
            .rates
            .iter()
            .zip(merged)
            .zip(sent)
            .zip(acks)
            .zip(refused.iter().map(|n| n.load(Ordering::Relaxed)))
            .zip(readings.windows(2))
            .map(|(((((rate, histogram), sent), acked), refused), cpu)| {
                let sent = sent - refused;
                let mut row = Row::new(
                    if self.api_key.is_some() {
                        "fanout-api"
                    } else {
                        "fanout"
                    },
                    peer_name(fleet),
                    format!("members={} rate={rate}/s", self.members),
                    *rate,
                );
                let seconds = self.step.as_secs_f64();
                row.offered_per_s = rate * members;
                row.delivered_per_s = histogram.len() as f64 / seconds;
                row.missing = (sent * receivers as u64).saturating_sub(histogram.len());
                row.delivery = Latency::of(&histogram);
                row.ack = Latency::of(&acked);
                row.refused = refused;
                if let [Some(from), Some(to)] = cpu {
                    row.set_cpu(Some(to - from), histogram.len());
                }
                row
            })
            .collect())
    }
}

/// Idle connections: what each costs the server in memory.
pub struct Idle {
    pub connections: usize,
    /// Distinct users the connections log in as (logins are slow on purpose).
    pub users: usize,
    pub hold: Duration,
}

impl Idle {
    pub async fn run(&self, fleet: &Fleet) -> anyhow::Result<Row> {
        let users: Vec<String> = (0..self.connections)
            .map(|i| format!("i{}", i % self.users.max(1)))
            .collect();
        let targets = std::slice::from_ref(&fleet.target);
        let cookies = fleet.login_all(&users, &fleet.target).await?;
        // After the logins: password hashing's memory is not the connections'.
        let before = fleet.server_pid.map(rss_bytes).transpose()?;
        let sockets = fleet.connect_all(&users, &cookies, targets, None).await?;
        // Keep reading, as idle browsers do, so heartbeats are answered.
        let mut holding = JoinSet::new();
        let until = tokio::time::Instant::now() + self.hold;
        for socket in sockets {
            let target = fleet.target.clone();
            holding.spawn(async move {
                let (mut tx, mut rx) = socket.split();
                loop {
                    tokio::select! {
                        frame = rx.next() => {
                            let Some(Ok(frame)) = frame else { return false };
                            target.answer(&frame, &mut tx).await;
                        }
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
                let _ = tx.send(Message::Close(None)).await;
                true
            });
        }
        tokio::time::sleep_until(until - Duration::from_millis(500)).await;
        let after = fleet.server_pid.map(rss_bytes).transpose()?;
        let mut alive = 0;
        while let Some(held) = holding.join_next().await {
            alive += u64::from(held?);
        }
        let mut row = Row::new(
            "idle",
            peer_name(fleet),
            format!("connections={}", self.connections),
            self.connections as f64,
        );
        row.missing = self.connections as u64 - alive;
        if let (Some(before), Some(after)) = (before, after) {
            row.rss_per_connection =
                Some(after.saturating_sub(before) as f64 / self.connections as f64);
        }
        Ok(row)
    }
}

/// Members spread over several replicas; senders on the first, latency
/// measured on the others.
pub struct Cluster {
    pub members: usize,
    pub senders: usize,
    pub rate: f64,
    pub duration: Duration,
    pub size: usize,
}

impl Cluster {
    pub async fn run(&self, fleet: &Fleet) -> anyhow::Result<Row> {
        let targets: Vec<Target> = std::iter::once(fleet.target.clone())
            .chain(fleet.others.iter().cloned())
            .collect();
        anyhow::ensure!(
            targets.len() > 1,
            "the cluster scenario needs --also TARGET"
        );
        let users: Vec<String> = (0..self.members).map(|i| format!("c{i}")).collect();
        let sockets = fleet.open(&users, &targets, Some("cluster")).await?;
        let start = Instant::now() + Duration::from_millis(500);
        let send_until = start + self.duration;
        let mut running = JoinSet::new();
        let mut senders_left = self.senders;
        for (index, socket) in sockets.into_iter().enumerate() {
            let replica = index % targets.len();
            let sends = replica == 0 && senders_left > 0;
            senders_left -= usize::from(sends);
            let (target, progress, size) =
                (targets[replica].clone(), fleet.progress.clone(), self.size);
            let period = Duration::from_secs_f64(1.0 / self.rate);
            running.spawn(async move {
                let (mut tx, mut rx) = socket.split();
                let mut tally = Tally::new();
                let mut ticker = tokio::time::interval_at(start.into(), period);
                let quiet_after = tokio::time::Instant::from(send_until + DRAIN);
                loop {
                    tokio::select! {
                        _ = ticker.tick(), if sends && Instant::now() < send_until => {
                            if tx.send(target.send("cluster", stamped_text(size), false)).await.is_err() {
                                break;
                            }
                            tally.sent += 1;
                        }
                        frame = rx.next() => {
                            let Some(Ok(frame)) = frame else { break };
                            let event = target.answer(&frame, &mut tx).await;
                            if let Event::Message { sent } = event {
                                // Only deliveries on other replicas measure the cluster.
                                if replica != 0 {
                                    record(&mut tally.delivery, sent.elapsed());
                                    tally.received += 1;
                                }
                                progress.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ = tokio::time::sleep_until(quiet_after) => break,
                    }
                }
                tally
            });
        }
        let mut total = Tally::new();
        while let Some(tally) = running.join_next().await {
            total.merge(&tally?);
        }
        let remote_members = (0..self.members)
            .filter(|index| index % targets.len() != 0)
            .count() as u64;
        let mut row = Row::new(
            "cluster",
            peer_name(fleet),
            format!(
                "replicas={} members={} {}x{}/s",
                targets.len(),
                self.members,
                self.senders,
                self.rate
            ),
            self.senders as f64 * self.rate,
        );
        let seconds = self.duration.as_secs_f64();
        row.offered_per_s = self.senders as f64 * self.rate * remote_members as f64;
        row.delivered_per_s = total.received as f64 / seconds;
        row.missing = (total.sent * remote_members).saturating_sub(total.received);
        row.delivery = Latency::of(&total.delivery);
        Ok(row)
    }
}

fn peer_name(fleet: &Fleet) -> &str {
    if let Some(label) = &fleet.label {
        return label;
    }
    match fleet.target.kind {
        crate::peer::PeerKind::Rookery => "rookery",
        crate::peer::PeerKind::Socketio => "socketio",
        crate::peer::PeerKind::Sockudo => "sockudo",
    }
}

/// Resident memory of a process, from /proc.
/// The CPU time (user and system, every thread) a process has used, in
/// seconds; `None` once it is gone. `/proc` counts it in USER_HZ ticks,
/// 100 per second on Linux whatever the kernel's own tick rate.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The server's CPU time from one instant of a run (its measured window's
/// start, after the logins) to when it is read.
struct CpuClock {
    pid: Option<u32>,
    from: Option<f64>,
}

impl CpuClock {
    async fn at(pid: Option<u32>, start: Instant) -> Self {
        tokio::time::sleep_until(start.into()).await;
        Self {
            pid,
            from: pid.and_then(cpu_seconds),
        }
    }

    fn elapsed(&self) -> Option<f64> {
        Some(cpu_seconds(self.pid?)? - self.from?)
    }
}

pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}
