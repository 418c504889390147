//! The chaos lane: three replicas on one broker and one MongoDB-protocol
//! database, clients that record every frame they get, faults injected on
//! a seeded schedule (replica SIGKILL, SIGTERM and SIGSTOP, broker kill,
//! a replica's broker link cut, database kill and freeze), and a checker
//! that holds what each client saw against what the store holds: lost acked
//! messages, false failures, duplicates, ordering violations, holes, and
//! how long deliveries took while a fault lasted and after it healed.
//!
//! `cargo test` runs the short lane for each broker; `scripts/chaos.sh`
//! runs the long one. Environment: `CHAOS_SEED` (a number, or `random`;
//! default a fixed one, so every run of the test suite replays the same
//! schedule, placements and send timings; printed either way),
//! `CHAOS_LANE` (`short` or `long`), `CHAOS_BROKERS` (comma-separated from
//! `redis`, `rabbitmq`, `nats`; default all; any other name fails the run), `CHAOS_REPORT` (a file the result tables are appended to),
//! `CHAOS_FAULTS` (comma-separated, e.g. `kill_broker,cut_link`: only these),
//! `CHAOS_LOGS` (set: print the replicas' logs at the end), `CHAOS_RUST_LOG`
//! (the replicas' log filter, e.g. `info,rookery::chat::room=debug`).
//!
//! Over 400 lines, kept whole: the schedule, the clients and the checker
//! share one record of every frame, and the checker's verdicts are only
//! trustworthy read beside what the clients recorded.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{serial, BrokerKind, BrokerServer, Replica};
use common::link::Link;
use common::mongo::MongoServer;
use common::PASSWORD;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rookery::store::Store;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const REPLICAS: usize = 3;
const ROOM: &str = "chaos";
/// A client that hears nothing (not even a ping) for this long treats its
/// replica as dead and reconnects elsewhere, as a careful client would.
const SILENCE: Duration = Duration::from_secs(8);
/// How long clients get after the last fault to receive everything stored.
const SETTLE_LIMIT: Duration = Duration::from_secs(45);
/// Bound on delivery after a fault heals: every message sent during it
/// reaches every member within this.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);
/// Bound on delivery (p99) between two users of one replica while its
/// broker is gone (the README: chat on a replica keeps working), beyond
/// the time the store takes to ack (the database's speed is not Rookery's).
/// Counted for acked messages: one refused `store_uncertain` timed out in
/// the store, so it has no ack time to compare with; it reaches everyone
/// when the room finds it stored, within [`RECOVERY_BOUND`] like any other.
const LOCAL_BOUND: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    KillReplica,
    TerminateReplica,
    FreezeReplica,
    KillBroker,
    CutLink,
    KillDatabase,
    FreezeDatabase,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::KillReplica,
        Fault::TerminateReplica,
        Fault::FreezeReplica,
        Fault::KillBroker,
        Fault::CutLink,
        Fault::KillDatabase,
        Fault::FreezeDatabase,
    ];

    /// As `CHAOS_FAULTS` names it.
    fn key(self) -> &'static str {
        match self {
            Fault::KillReplica => "kill_replica",
            Fault::TerminateReplica => "terminate_replica",
            Fault::FreezeReplica => "freeze_replica",
            Fault::KillBroker => "kill_broker",
            Fault::CutLink => "cut_link",
            Fault::KillDatabase => "kill_database",
            Fault::FreezeDatabase => "freeze_database",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::KillReplica => "replica SIGKILL",
            Fault::TerminateReplica => "replica SIGTERM",
            Fault::FreezeReplica => "replica SIGSTOP",
            Fault::KillBroker => "broker killed",
            Fault::CutLink => "broker link cut",
            Fault::KillDatabase => "database killed",
            Fault::FreezeDatabase => "database SIGSTOP",
        }
    }

    /// Faults after which users of one replica still talk to each other.
    fn broker_only(self) -> bool {
        matches!(self, Fault::KillBroker | Fault::CutLink)
    }
}

struct Lane {
    name: &'static str,
    room_users: usize,
    direct_pairs: usize,
    send_every: Duration,
    faults: Vec<Fault>,
    hold: Duration,
    settle: Duration,
}

impl Lane {
    fn from_env(rng: &mut StdRng) -> Self {
        let long = std::env::var("CHAOS_LANE").is_ok_and(|lane| lane == "long");
        let mut faults: Vec<Fault> = if long {
            Fault::ALL
                .iter()
                .chain(Fault::ALL.iter())
                .copied()
                .collect()
        } else {
            vec![
                Fault::KillReplica,
                Fault::KillBroker,
                Fault::CutLink,
                Fault::FreezeReplica,
                Fault::FreezeDatabase,
            ]
        };
        if let Ok(chosen) = std::env::var("CHAOS_FAULTS") {
            faults = chosen
                .split(',')
                .map(|key| {
                    *Fault::ALL
                        .iter()
                        .find(|fault| fault.key() == key.trim())
                        .unwrap_or_else(|| panic!("CHAOS_FAULTS: no fault {key:?}"))
                })
                .collect();
        }
        shuffle(&mut faults, rng);
        if long {
            Lane {
                name: "long",
                room_users: 24,
                direct_pairs: 4,
                // About the short lane's rate in all (50 messages/s): what
                // the long lane adds is time and faults, not load the
                // MongoDB-protocol stand-in cannot take.
                send_every: Duration::from_millis(650),
                faults,
                hold: Duration::from_secs(10),
                settle: Duration::from_secs(12),
            }
        } else {
            Lane {
                name: "short",
                room_users: 9,
                direct_pairs: 2,
                send_every: Duration::from_millis(250),
                faults,
                hold: Duration::from_secs(5),
                settle: Duration::from_secs(7),
            }
        }
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut StdRng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// What happened to one send, from its client's side.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Waiting,
    Acked(u64),
    /// An `error` frame with this code.
    Refused(String),
    /// The connection ended before an answer: stored or not, unknown.
    Unanswered,
}

#[derive(Clone, Debug)]
struct Sent {
    room: String,
    text: String,
    at: Instant,
    replica: usize,
    outcome: Outcome,
    /// When the ack came (refusals leave it unset).
    answered: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Seen {
    seq: u64,
    text: String,
    at: Instant,
    replica: usize,
    /// Read back into a hole the server declared (`recovered:false`), so
    /// below what arrived live since: placed by seq, not out of order.
    refill: bool,
}

/// Everything one client did and got.
#[derive(Default, Debug)]
struct Record {
    name: String,
    rooms: Vec<String>,
    /// By ref.
    sent: HashMap<u64, Sent>,
    /// Per room, in arrival order.
    seen: HashMap<String, Vec<Seen>>,
    /// Resumes answered with `recovered:false` (the store could not be
    /// read): the client asks again from the same place until it is.
    unrecovered: usize,
    /// Per room, where a resume answered `recovered:false` started: the
    /// client has a hole after it until a resume from there succeeds.
    holes: HashMap<String, u64>,
    connections: usize,
    /// What each connection did (replica, resume, `joined`, live range),
    /// timed: printed around a hole so its cause can be read.
    trail: Vec<(Instant, String)>,
}

impl Record {
    fn log(&mut self, event: String) {
        self.trail.push((Instant::now(), event));
    }

    /// Where to resume `room` from: the start of a hole, or the newest seq.
    fn resume_from(&self, room: &str) -> u64 {
        self.holes
            .get(room)
            .copied()
            .unwrap_or_else(|| self.last_seq(room))
    }

    fn last_seq(&self, room: &str) -> u64 {
        self.seen
            .get(room)
            .and_then(|seen| seen.iter().map(|s| s.seq).max())
            .unwrap_or(0)
    }
}

/// The replicas' current addresses; `None` while one is down.
type Addresses = Arc<Mutex<Vec<Option<SocketAddr>>>>;

/// One simulated user: logs in, connects to a live replica, resumes its
/// rooms, sends on a jittered clock, and starts over on any failure.
async fn client(
    record: Arc<Mutex<Record>>,
    peer: Option<String>,
    addresses: Addresses,
    send_every: Duration,
    seed: u64,
    mut sending: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let name = record.lock().unwrap().name.clone();
    let mut next_ref = 1u64;
    let mut cookie: Option<String> = None;
    while !*stop.borrow() {
        let Some((replica, addr)) = pick(&addresses, &mut rng) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if cookie.is_none() {
            cookie = login(addr, &name).await;
            if cookie.is_none() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        }
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.clone().unwrap().parse().unwrap());
        let connect = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async(request),
        );
        let mut socket = match connect.await {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response)))
                if response.status() == 401 =>
            {
                cookie = None;
                continue;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
                continue;
            }
        };
        let resume = {
            let mut record = record.lock().unwrap();
            record.connections += 1;
            let rooms: serde_json::Map<String, Value> = record
                .rooms
                .iter()
                .map(|room| (room.clone(), json!(record.resume_from(room))))
                .collect();
            let resume = json!({"type": "resume", "rooms": rooms});
            record.log(format!("connected to replica {replica}, {resume}"));
            resume
        };
        // Per room: the first and last seq that arrived live, and how many.
        let mut live: HashMap<String, (u64, u64, usize)> = HashMap::new();
        if socket
            .send(Message::Text(resume.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        let mut resumed = 0usize;
        let rooms = record.lock().unwrap().rooms.len();
        let mut draining = false;
        let mut retry_resume: Option<Instant> = None;
        let mut next_send = Instant::now() + jittered(send_every, &mut rng);
        loop {
            tokio::select! {
                frame = tokio::time::timeout(SILENCE, socket.next()) => {
                    let text = match frame {
                        Ok(Some(Ok(Message::Text(text)))) => text,
                        Ok(Some(Ok(_))) => continue,
                        _ => break,
                    };
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    let mut record = record.lock().unwrap();
                    match frame["type"].as_str() {
                        Some("joined") => {
                            resumed += 1;
                            let room = frame["room"].as_str().unwrap().to_owned();
                            // A resume from a hole's start overlaps what
                            // arrived live since: that part is history the
                            // client asked for again, not a redelivery.
                            let refill = record.holes.contains_key(&room);
                            let known: HashSet<u64> = match refill {
                                true => record.seen.get(&room).into_iter().flatten().map(|s| s.seq).collect(),
                                false => HashSet::new(),
                            };
                            if frame["recovered"] == false {
                                record.unrecovered += 1;
                                let from = record.resume_from(&room);
                                record.holes.insert(room.clone(), from);
                                retry_resume = Some(Instant::now() + Duration::from_secs(1));
                            } else {
                                record.holes.remove(&room);
                            }
                            let history = frame["history"].as_array().unwrap();
                            let seq_at = |n: Option<&Value>| n.and_then(|m| m["seq"].as_u64());
                            record.log(format!(
                                "joined {room}, recovered {}, history {:?}..{:?} ({} messages)",
                                frame["recovered"],
                                seq_at(history.first()),
                                seq_at(history.last()),
                                history.len()
                            ));
                            for message in history {
                                if !known.contains(&message["seq"].as_u64().unwrap()) {
                                    note(&mut record, &room, message, replica, refill);
                                }
                            }
                        }
                        Some("message") if !frame["seq"].is_null() => {
                            let room = frame["room"].as_str().unwrap().to_owned();
                            let seq = frame["seq"].as_u64().unwrap();
                            let range = live.entry(room.clone()).or_insert((seq, seq, 0));
                            range.1 = seq;
                            range.2 += 1;
                            note(&mut record, &room, &frame, replica, false);
                        }
                        Some("ack") => {
                            let reference = frame["ref"].as_u64().unwrap();
                            let seq = frame["seq"].as_u64().unwrap();
                            let sent = record.sent.get_mut(&reference).unwrap();
                            sent.outcome = Outcome::Acked(seq);
                            sent.answered = Some(Instant::now());
                        }
                        Some("error") => {
                            let code = frame["code"].as_str().unwrap_or("?").to_owned();
                            match frame["ref"].as_u64() {
                                Some(reference) => {
                                    record.sent.get_mut(&reference).unwrap().outcome =
                                        Outcome::Refused(code);
                                }
                                // A failed history read of a resume; its
                                // `joined` says `recovered:false`.
                                None => assert_eq!(code, "store_unavailable", "{name}: {frame}"),
                            }
                        }
                        Some("reconnect") => {
                            record.log("asked to reconnect (drain)".to_owned());
                            draining = true;
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(next_send), if resumed >= rooms && !draining && *sending.borrow() => {
                    next_send = Instant::now() + jittered(send_every, &mut rng);
                    let reference = next_ref;
                    next_ref += 1;
                    let text = format!("{name} {reference}");
                    let room = record.lock().unwrap().rooms[0].clone();
                    let frame = match &peer {
                        Some(peer) => json!({"type": "direct", "to": peer, "text": text, "ref": reference}),
                        None => json!({"type": "send", "room": room, "text": text, "ref": reference}),
                    };
                    record.lock().unwrap().sent.insert(reference, Sent {
                        room,
                        text,
                        at: Instant::now(),
                        replica,
                        outcome: Outcome::Waiting,
                        answered: None,
                    });
                    if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(retry_resume.unwrap_or_else(Instant::now)), if retry_resume.is_some() => {
                    retry_resume = None;
                    let resume = {
                        let record = record.lock().unwrap();
                        let rooms: serde_json::Map<String, Value> = record
                            .holes
                            .keys()
                            .map(|room| (room.clone(), json!(record.resume_from(room))))
                            .collect();
                        json!({"type": "resume", "rooms": rooms})
                    };
                    record.lock().unwrap().log(format!("asked again, {resume}"));
                    if socket.send(Message::Text(resume.to_string().into())).await.is_err() {
                        break;
                    }
                }
                _ = stop.changed() => break,
                _ = sending.changed() => {}
            }
        }
        let mut record = record.lock().unwrap();
        let mut live: Vec<_> = live.into_iter().collect();
        live.sort();
        record.log(format!(
            "left replica {replica}; live (room, (first, last, count)): {live:?}"
        ));
        for sent in record.sent.values_mut() {
            if sent.outcome == Outcome::Waiting {
                sent.outcome = Outcome::Unanswered;
            }
        }
    }
}

/// Half to one and a half `every`, so clients do not send in lockstep.
fn jittered(every: Duration, rng: &mut StdRng) -> Duration {
    every.mul_f64(rng.random_range(0.5..1.5))
}

fn note(record: &mut Record, room: &str, message: &Value, replica: usize, refill: bool) {
    record.seen.entry(room.to_owned()).or_default().push(Seen {
        seq: message["seq"].as_u64().unwrap(),
        text: message["text"].as_str().unwrap().to_owned(),
        at: Instant::now(),
        replica,
        refill,
    });
}

fn pick(addresses: &Addresses, rng: &mut StdRng) -> Option<(usize, SocketAddr)> {
    let live: Vec<(usize, SocketAddr)> = addresses
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(n, addr)| addr.map(|addr| (n, addr)))
        .collect();
    (!live.is_empty()).then(|| live[rng.random_range(0..live.len())])
}

/// The session cookie of `name` (registered on first login), if the
/// replica could log them in.
async fn login(addr: SocketAddr, name: &str) -> Option<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = http
        .post(format!("http://{addr}/login"))
        .form(&[("name", name), ("password", PASSWORD)])
        .send()
        .await
        .ok()?;
    if response.status() != 303 {
        return None;
    }
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(str::to_owned)
        .collect();
    (!cookies.is_empty()).then(|| cookies.join("; "))
}

/// When a fault was injected and healed.
#[derive(Clone, Copy, Debug)]
struct Window {
    fault: Fault,
    start: Instant,
    healed: Instant,
    /// The replica it hit, for faults that hit one.
    replica: Option<usize>,
}

/// What the checker found. Every count but the delays must be zero.
#[derive(Default, Debug)]
struct Verdict {
    stored: usize,
    acked: usize,
    /// Acked, but the store holds something else (or nothing) at that seq.
    lost_acked: usize,
    /// A few of them: who, what, and what the store has there.
    lost_samples: Vec<String>,
    /// Refused with a definite code, yet stored.
    false_failures: usize,
    /// The same text stored twice.
    stored_twice: usize,
    /// A client got a seq it already had.
    duplicates: usize,
    /// A client got a seq below one it already had.
    reordered: usize,
    /// Stored messages of a client's rooms it never got.
    holes: usize,
    /// A few of them: client, room, seq, and the room's newest seq.
    hole_samples: Vec<String>,
    /// A client got a seq whose text is not the stored one.
    corrupted: usize,
    /// Resumes answered `recovered:false` (then asked again until whole).
    unrecovered: usize,
    refused: BTreeMap<String, usize>,
    unanswered: usize,
    /// Per fault: the longest a message sent during it took to reach every
    /// member after the heal, and the slowest delivery between two users of
    /// one replica while a broker fault lasted.
    recovery: BTreeMap<Fault, Duration>,
    /// The slowest arrival after each heal: who got what.
    slowest: BTreeMap<Fault, String>,
    local: BTreeMap<Fault, Vec<Duration>>,
    /// The slowest of those: what it was, how long its ack took.
    slowest_local: BTreeMap<Fault, (Duration, String)>,
    /// Per fault: how long acks took for messages sent while it lasted.
    acks: BTreeMap<Fault, Vec<Duration>>,
    deliveries: usize,
}

impl Verdict {
    fn clean(&self) -> bool {
        self.lost_acked == 0
            && self.false_failures == 0
            && self.stored_twice == 0
            && self.duplicates == 0
            && self.reordered == 0
            && self.holes == 0
            && self.corrupted == 0
    }
}

/// Holds the clients' records against the store's rooms (room → seq → text).
fn check(
    records: &[Record],
    store: &HashMap<String, BTreeMap<u64, String>>,
    windows: &[Window],
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut stored_texts: HashMap<&str, (&str, u64)> = HashMap::new();
    for (room, messages) in store {
        verdict.stored += messages.len();
        for (seq, text) in messages {
            if stored_texts
                .insert(text.as_str(), (room.as_str(), *seq))
                .is_some()
            {
                verdict.stored_twice += 1;
            }
        }
    }
    let mut sent_by_text: HashMap<&str, &Sent> = HashMap::new();
    for record in records {
        verdict.unrecovered += record.unrecovered;
        for sent in record.sent.values() {
            sent_by_text.insert(sent.text.as_str(), sent);
            let stored = stored_texts.get(sent.text.as_str());
            match &sent.outcome {
                Outcome::Acked(seq) => {
                    verdict.acked += 1;
                    if stored != Some(&(sent.room.as_str(), *seq)) {
                        verdict.lost_acked += 1;
                        if verdict.lost_samples.len() < 10 {
                            let there = store.get(&sent.room).and_then(|m| m.get(seq));
                            verdict.lost_samples.push(format!(
                                "{:?} acked as {} seq {seq} (sent on replica {}); the store has {there:?} there, and the text at {stored:?}",
                                sent.text, sent.room, sent.replica
                            ));
                        }
                    }
                }
                Outcome::Refused(code) => {
                    *verdict.refused.entry(code.clone()).or_default() += 1;
                    if code != "store_uncertain" && stored.is_some() {
                        verdict.false_failures += 1;
                    }
                }
                Outcome::Unanswered | Outcome::Waiting => verdict.unanswered += 1,
            }
        }
        for room in &record.rooms {
            let seen = record.seen.get(room).map(Vec::as_slice).unwrap_or(&[]);
            let mut got = HashSet::new();
            let mut highest = 0;
            for delivery in seen {
                if !got.insert(delivery.seq) {
                    verdict.duplicates += 1;
                } else if delivery.seq < highest && !delivery.refill {
                    verdict.reordered += 1;
                }
                highest = highest.max(delivery.seq);
                let stored = store
                    .get(room)
                    .and_then(|messages| messages.get(&delivery.seq));
                if stored != Some(&delivery.text) {
                    verdict.corrupted += 1;
                }
            }
            if let Some(messages) = store.get(room) {
                let newest = messages.keys().last().copied().unwrap_or(0);
                for seq in messages.keys().filter(|seq| !got.contains(seq)) {
                    verdict.holes += 1;
                    if verdict.hole_samples.len() < 10 {
                        let mut sample = format!(
                            "{} missed {room} seq {seq} (newest {newest}, got {} in all)",
                            record.name,
                            got.len()
                        );
                        if verdict.hole_samples.len() < 3 {
                            sample.push_str(&explain_hole(records, record, room, *seq, windows));
                        }
                        verdict.hole_samples.push(sample);
                    }
                }
            }
        }
    }
    for sent in sent_by_text.values() {
        let (Some(answered), Some(window)) = (
            sent.answered,
            windows
                .iter()
                .find(|w| sent.at >= w.start && sent.at < w.healed),
        ) else {
            continue;
        };
        let took = answered.saturating_duration_since(sent.at);
        verdict.acks.entry(window.fault).or_default().push(took);
    }
    for record in records {
        for (room, seen) in &record.seen {
            for delivery in seen {
                let Some(sent) = sent_by_text.get(delivery.text.as_str()) else {
                    continue;
                };
                debug_assert_eq!(&sent.room, room);
                verdict.deliveries += 1;
                let Some(window) = windows
                    .iter()
                    .find(|w| sent.at >= w.start && sent.at < w.healed)
                else {
                    continue;
                };
                let late = delivery.at.saturating_duration_since(window.healed);
                let recovery = verdict.recovery.entry(window.fault).or_default();
                if late >= *recovery {
                    *recovery = late;
                    verdict.slowest.insert(
                        window.fault,
                        format!(
                            "{room} seq {} ({:?}, sent on replica {}) to {} on replica {}",
                            delivery.seq, sent.text, sent.replica, record.name, delivery.replica
                        ),
                    );
                }
                if window.fault.broker_only()
                    && sent.answered.is_some()
                    && sent.replica == delivery.replica
                    && window.replica.is_none_or(|hit| hit == sent.replica)
                {
                    let took = delivery.at.saturating_duration_since(sent.at);
                    verdict.local.entry(window.fault).or_default().push(took);
                    let slowest = verdict
                        .slowest_local
                        .entry(window.fault)
                        .or_insert((Duration::ZERO, String::new()));
                    if took >= slowest.0 {
                        let ack = sent
                            .answered
                            .map_or(Duration::ZERO, |at| at.saturating_duration_since(sent.at));
                        *slowest = (
                            took,
                            format!(
                                "{room} seq {} ({:?}, sent {:.2} s into it on replica {}, acked after {:.2} s) \
                                 to {} after {:.2} s{}",
                                delivery.seq,
                                sent.text,
                                sent.at.saturating_duration_since(window.start).as_secs_f64(),
                                sent.replica,
                                ack.as_secs_f64(),
                                record.name,
                                took.as_secs_f64(),
                                if delivery.refill { " (read into a declared hole)" } else { "" },
                            ),
                        );
                    }
                }
            }
        }
    }
    verdict
}

/// Around a hole: when the other clients got the seq, the faults, what the
/// client got either side of it, and its own trail (connections, resumes,
/// `joined` answers, live ranges) within 15 s of it.
fn explain_hole(
    records: &[Record],
    record: &Record,
    room: &str,
    seq: u64,
    windows: &[Window],
) -> String {
    let origin = records
        .iter()
        .flat_map(|r| r.trail.first().map(|(at, _)| *at))
        .min()
        .unwrap_or_else(Instant::now);
    let t = |at: Instant| format!("{:.2}s", at.saturating_duration_since(origin).as_secs_f64());
    let arrivals: Vec<(Instant, &str, usize, bool)> = records
        .iter()
        .flat_map(|r| {
            r.seen
                .get(room)
                .into_iter()
                .flatten()
                .filter(|s| s.seq == seq)
                .map(|s| (s.at, r.name.as_str(), s.replica, s.refill))
        })
        .collect();
    let Some(first) = arrivals.iter().map(|a| a.0).min() else {
        return "; nobody got it".to_owned();
    };
    let origin_utc = time::OffsetDateTime::now_utc() - origin.elapsed();
    let mut text = format!(
        "\n  (0.00s is {origin_utc} UTC)\n  others got it from {} to {} ({} arrivals; by replica: {:?})",
        t(first),
        t(arrivals.iter().map(|a| a.0).max().unwrap()),
        arrivals.len(),
        (0..REPLICAS)
            .map(|n| arrivals.iter().filter(|a| a.2 == n).count())
            .collect::<Vec<_>>()
    );
    for window in windows {
        text.push_str(&format!(
            "\n  fault {} on {:?}: {}..{}",
            window.fault.name(),
            window.replica,
            t(window.start),
            t(window.healed)
        ));
    }
    let seen = record.seen.get(room).map(Vec::as_slice).unwrap_or(&[]);
    let before = seen.iter().filter(|s| s.seq < seq).max_by_key(|s| s.seq);
    let after = seen.iter().filter(|s| s.seq > seq).min_by_key(|s| s.seq);
    for (side, delivery) in [("below", before), ("above", after)] {
        if let Some(d) = delivery {
            text.push_str(&format!(
                "\n  nearest {side}: seq {} at {} from replica {}{}",
                d.seq,
                t(d.at),
                d.replica,
                if d.refill { " (refill)" } else { "" }
            ));
        }
    }
    let near = Duration::from_secs(15);
    for (at, event) in &record.trail {
        if *at + near >= first && *at <= first + near {
            text.push_str(&format!("\n  {} {event}", t(*at)));
        }
    }
    text
}

/// `(room, seq)` pairs the `messages` collection holds more than once,
/// read raw: the store's unique index should make this impossible.
async fn seqs_held_twice(url: &str) -> Vec<(String, i64, Vec<String>)> {
    use mongodb::bson::Document;
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    let messages = client
        .default_database()
        .unwrap()
        .collection::<Document>("messages");
    let mut cursor = messages.find(mongodb::bson::doc! {}).await.unwrap();
    let mut held: HashMap<(String, i64), Vec<String>> = HashMap::new();
    while cursor.advance().await.unwrap() {
        let doc = cursor.deserialize_current().unwrap();
        let key = (
            doc.get_str("room").unwrap_or_default().to_owned(),
            doc.get_i64("seq").unwrap_or_default(),
        );
        held.entry(key)
            .or_default()
            .push(doc.get_str("text").unwrap_or_default().to_owned());
    }
    let mut twice: Vec<(String, i64, Vec<String>)> = held
        .into_iter()
        .filter(|(_, texts)| texts.len() > 1)
        .map(|((room, seq), texts)| (room, seq, texts))
        .collect();
    twice.sort();
    twice
}

/// Every stored message of `rooms`.
async fn stored(
    store: &rookery::store::mongo::MongoStore,
    rooms: &[String],
) -> HashMap<String, BTreeMap<u64, String>> {
    let mut all = HashMap::new();
    for room in rooms {
        let mut messages = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = store.after(room, after, 500).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq();
            for message in page {
                messages.insert(message.seq(), message.text().unwrap_or_default().to_owned());
            }
        }
        all.insert(room.clone(), messages);
    }
    all
}

/// The `p` quantile of `durations` (0 when empty).
fn percentile(durations: &[Duration], p: f64) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(at).copied().unwrap_or_default()
}

/// The schedule of a run that names none: the same on every run, so the
/// test suite is reproducible; `CHAOS_SEED=random` explores.
const DEFAULT_SEED: u64 = 20_261_207;

fn seed() -> u64 {
    match std::env::var("CHAOS_SEED").as_deref() {
        Err(_) | Ok("") => DEFAULT_SEED,
        Ok("random") => rand::random(),
        Ok(seed) => seed
            .parse()
            .unwrap_or_else(|_| panic!("CHAOS_SEED={seed:?}: a number or `random`")),
    }
}

/// Whether `CHAOS_BROKERS` asks for `kind`. A name that is no broker fails
/// the run: a typo must not make every lane pass without running.
fn wanted(kind: BrokerKind) -> bool {
    let Ok(brokers) = std::env::var("CHAOS_BROKERS") else {
        return true;
    };
    let names: Vec<&str> = brokers.split(',').map(str::trim).collect();
    for name in &names {
        assert!(
            ["redis", "rabbitmq", "nats"].contains(name),
            "CHAOS_BROKERS names {name:?}; the brokers are redis, rabbitmq and nats"
        );
    }
    let wanted = names.contains(&format!("{kind:?}").to_lowercase().as_str());
    if !wanted {
        println!("chaos {kind:?}: not run (CHAOS_BROKERS={brokers})");
    }
    wanted
}

async fn chaos(kind: BrokerKind) {
    if !wanted(kind) {
        return;
    }
    let _serial = serial().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let lane = Lane::from_env(&mut rng);
    println!(
        "chaos {kind:?}, {} lane, seed {seed} (CHAOS_SEED={seed} replays it): {:?}",
        lane.name, lane.faults
    );

    let mut broker = BrokerServer::start(kind);
    let mut database = MongoServer::start();
    let database_url = database.url("rookery_chaos");
    let broker_addr: SocketAddr = ([127, 0, 0, 1], broker.port()).into();
    let mut links = Vec::new();
    let mut envs = Vec::new();
    for _ in 0..REPLICAS {
        let link = Link::start(broker_addr).await;
        let mut env = broker.replica_env_on(link.port);
        env.push(("MONGO_URL", database_url.clone()));
        if let Ok(filter) = std::env::var("CHAOS_RUST_LOG") {
            env.push(("RUST_LOG", filter));
        }
        links.push(link);
        envs.push(env);
    }
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|n| Replica::start(&format!("node{n}"), &envs[n]))
        .collect();
    let addresses: Addresses = Arc::new(Mutex::new(
        replicas.iter().map(|replica| Some(replica.addr)).collect(),
    ));
    common::cluster::wait_connected(&replicas, true).await;

    let (sending_tx, sending) = watch::channel(true);
    let (stop_tx, stop) = watch::channel(false);
    let mut records = Vec::new();
    let mut tasks = Vec::new();
    let mut users: Vec<(String, Vec<String>, Option<String>)> = (0..lane.room_users)
        .map(|n| (format!("member{n}"), vec![ROOM.to_owned()], None))
        .collect();
    for n in 0..lane.direct_pairs {
        let (a, b) = (format!("pen{n}a"), format!("pen{n}b"));
        let room = format!("@{a}:{b}");
        users.push((a.clone(), vec![room.clone()], Some(b.clone())));
        users.push((b, vec![room], Some(a)));
    }
    for (name, rooms, peer) in users {
        let record = Arc::new(Mutex::new(Record {
            name,
            rooms,
            ..Record::default()
        }));
        records.push(record.clone());
        tasks.push(tokio::spawn(client(
            record,
            peer,
            addresses.clone(),
            lane.send_every,
            rng.random(),
            sending.clone(),
            stop.clone(),
        )));
    }

    tokio::time::sleep(lane.settle).await;
    let mut windows = Vec::new();
    for &fault in &lane.faults {
        let target = rng.random_range(0..REPLICAS);
        let start = Instant::now();
        let replica = match fault {
            Fault::KillReplica | Fault::TerminateReplica => {
                addresses.lock().unwrap()[target] = None;
                if fault == Fault::KillReplica {
                    replicas[target].kill();
                } else {
                    replicas[target].terminate();
                    let _ = replicas[target].exited_within(lane.hold).await;
                }
                tokio::time::sleep(lane.hold.saturating_sub(start.elapsed())).await;
                replicas[target] = Replica::start(&format!("node{target}"), &envs[target]);
                addresses.lock().unwrap()[target] = Some(replicas[target].addr);
                Some(target)
            }
            Fault::FreezeReplica => {
                replicas[target].freeze(true);
                tokio::time::sleep(lane.hold).await;
                replicas[target].freeze(false);
                Some(target)
            }
            Fault::KillBroker => {
                broker.kill();
                tokio::time::sleep(lane.hold).await;
                broker.spawn();
                None
            }
            Fault::CutLink => {
                links[target].cut(true);
                tokio::time::sleep(lane.hold).await;
                links[target].cut(false);
                Some(target)
            }
            Fault::KillDatabase => {
                database.kill();
                tokio::time::sleep(lane.hold).await;
                database.spawn();
                None
            }
            Fault::FreezeDatabase => {
                database.freeze(true);
                tokio::time::sleep(lane.hold).await;
                database.freeze(false);
                None
            }
        };
        windows.push(Window {
            fault,
            start,
            healed: Instant::now(),
            replica,
        });
        println!("  {} (replica {replica:?}) healed", fault.name());
        tokio::time::sleep(lane.settle).await;
    }

    // Quiet: no new sends, then wait until every client has everything
    // the store holds for its rooms, or the limit passes.
    sending_tx.send_replace(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rooms: Vec<String> = {
        let mut rooms: Vec<String> = records
            .iter()
            .flat_map(|r| r.lock().unwrap().rooms.clone())
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    };
    let deadline = Instant::now() + SETTLE_LIMIT;
    // Sends still waiting for their answer may yet be stored: a snapshot
    // taken before them would miss messages the clients then receive.
    while Instant::now() < deadline
        && records.iter().any(|record| {
            let record = record.lock().unwrap();
            record
                .sent
                .values()
                .any(|sent| sent.outcome == Outcome::Waiting)
        })
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reader = common::mongo::store_at(&database_url).await;
    loop {
        let store = stored(&reader, &rooms).await;
        let complete = records.iter().all(|record| {
            let record = record.lock().unwrap();
            record.rooms.iter().all(|room| {
                let newest = store[room].keys().last().copied().unwrap_or(0);
                record.last_seq(room) >= newest && record.holes.is_empty()
            })
        });
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_tx.send_replace(true);
    for task in tasks {
        task.await.unwrap();
    }
    // What the clients are held against: the store once they have stopped.
    let store = stored(&reader, &rooms).await;
    let records: Vec<Record> = records
        .into_iter()
        .map(|record| std::mem::take(&mut *record.lock().unwrap()))
        .collect();
    let verdict = check(&records, &store, &windows);
    let held_twice = seqs_held_twice(&database_url).await;
    report(kind, seed, &lane, &records, &verdict);
    // Joins whose page ended below what the room had delivered, read again
    // (see `Room::answer_join`), in the logs of the replicas running now.
    let reread: usize = replicas
        .iter()
        .map(|replica| {
            replica
                .log()
                .matches("history ended before delivery")
                .count()
        })
        .sum();
    if reread > 0 {
        println!("{reread} joins read the rest of a page that ended below delivery");
    }
    if !verdict.clean() || !held_twice.is_empty() || std::env::var_os("CHAOS_LOGS").is_some() {
        for (n, replica) in replicas.iter().enumerate() {
            eprintln!("--- node{n} log ---\n{}", replica.log());
        }
    }
    if !verdict.clean() || !held_twice.is_empty() {
        drop(reader);
        println!(
            "the database's files are kept in {}",
            database.keep().display()
        );
    }
    assert!(verdict.clean(), "chaos {kind:?} seed {seed}: {verdict:#?}");
    assert!(
        held_twice.is_empty(),
        "chaos {kind:?} seed {seed}: the database holds these (room, seq) more than once, \
         against its unique index: {held_twice:?}"
    );
    for (fault, late) in &verdict.recovery {
        assert!(
            *late <= RECOVERY_BOUND,
            "chaos {kind:?} seed {seed}: after {} messages took {late:?} to arrive",
            fault.name()
        );
    }
    for (fault, took) in &verdict.local {
        let p99 = percentile(took, 0.99);
        let store = percentile(verdict.acks.get(fault).map_or(&[][..], Vec::as_slice), 0.99);
        assert!(
            p99 <= store + LOCAL_BOUND,
            "chaos {kind:?} seed {seed}: during {} deliveries within one replica took {p99:?} (p99), \
             acks {store:?}",
            fault.name()
        );
    }
    assert!(
        verdict.acked > 0 && verdict.deliveries > verdict.acked,
        "the clients sent and received: {verdict:#?}"
    );
}

fn report(kind: BrokerKind, seed: u64, lane: &Lane, records: &[Record], verdict: &Verdict) {
    let connections: usize = records.iter().map(|r| r.connections).sum();
    let refused: Vec<String> = verdict
        .refused
        .iter()
        .map(|(code, n)| format!("{n} {code}"))
        .collect();
    let mut text = format!(
        "\n### {kind:?}, {} lane, seed {seed}\n\n\
         {} clients, {connections} connections; {} stored, {} acked, {} refused ({}), {} unanswered; {} deliveries checked.\n\n\
         | lost acked | false failures | stored twice | duplicates | reordered | holes | corrupted | unrecovered |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {} | {} | {} | {} | {} |\n\n\
         | fault | slowest arrival after the heal | delivery within one replica meanwhile, p99 / max | ack meanwhile, p99 / max |\n|---|---|---|---|\n",
        lane.name,
        records.len(),
        verdict.stored,
        verdict.acked,
        verdict.refused.values().sum::<usize>(),
        if refused.is_empty() { "none".to_owned() } else { refused.join(", ") },
        verdict.unanswered,
        verdict.deliveries,
        verdict.lost_acked,
        verdict.false_failures,
        verdict.stored_twice,
        verdict.duplicates,
        verdict.reordered,
        verdict.holes,
        verdict.corrupted,
        verdict.unrecovered,
    );
    for (fault, late) in &verdict.recovery {
        let local = verdict.local.get(fault).map_or("–".to_owned(), |took| {
            format!(
                "{:.2} / {:.2} s ({} deliveries)",
                percentile(took, 0.99).as_secs_f64(),
                percentile(took, 1.0).as_secs_f64(),
                took.len()
            )
        });
        let acks = verdict.acks.get(fault).map_or("–".to_owned(), |took| {
            format!(
                "{:.2} / {:.2} s",
                percentile(took, 0.99).as_secs_f64(),
                percentile(took, 1.0).as_secs_f64()
            )
        });
        text.push_str(&format!(
            "| {} | {:.2} s | {local} | {acks} |\n",
            fault.name(),
            late.as_secs_f64()
        ));
    }
    for lost in &verdict.lost_samples {
        text.push_str(&format!("\nLost: {lost}."));
    }
    for hole in &verdict.hole_samples {
        text.push_str(&format!("\nHole: {hole}."));
    }
    for (fault, slowest) in &verdict.slowest {
        text.push_str(&format!("\nSlowest after {}: {slowest}.", fault.name()));
    }
    for (fault, (_, slowest)) in &verdict.slowest_local {
        text.push_str(&format!(
            "\nSlowest within one replica during {}: {slowest}.",
            fault.name()
        ));
    }
    text.push('\n');
    println!("{text}");
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_redis() {
    chaos(BrokerKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nats() {
    chaos(BrokerKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_rabbitmq() {
    chaos(BrokerKind::Rabbitmq).await;
}

/// The checker itself: each kind of fault in a client's record is counted,
/// so a clean verdict means something.
#[test]
fn the_checker_counts_every_kind_of_fault() {
    let now = Instant::now();
    let store: HashMap<String, BTreeMap<u64, String>> = HashMap::from([(
        ROOM.to_owned(),
        BTreeMap::from([
            (1, "a 1".to_owned()),
            (2, "a 2".to_owned()),
            (3, "a 3".to_owned()),
            (4, "a 4".to_owned()),
        ]),
    )]);
    let sent = |text: &str, outcome: Outcome| Sent {
        room: ROOM.into(),
        text: text.into(),
        at: now,
        replica: 0,
        outcome,
        answered: None,
    };
    let seen = |seq: u64, text: &str| Seen {
        seq,
        text: text.into(),
        at: now,
        replica: 0,
        refill: false,
    };
    let clean = Record {
        name: "a".into(),
        rooms: vec![ROOM.into()],
        sent: HashMap::from([
            (1, sent("a 1", Outcome::Acked(1))),
            (2, sent("a 2", Outcome::Acked(2))),
            (3, sent("a 3", Outcome::Refused("store_uncertain".into()))),
            (4, sent("a 4", Outcome::Unanswered)),
            (5, sent("a 5", Outcome::Refused("overloaded".into()))),
        ]),
        seen: HashMap::from([(
            ROOM.to_owned(),
            vec![
                seen(1, "a 1"),
                seen(2, "a 2"),
                seen(3, "a 3"),
                seen(4, "a 4"),
            ],
        )]),
        ..Record::default()
    };
    assert!(check(&[clean], &store, &[]).clean());

    let faulty = Record {
        name: "a".into(),
        rooms: vec![ROOM.into()],
        sent: HashMap::from([
            (1, sent("a 1", Outcome::Acked(2))),
            (2, sent("a 2", Outcome::Refused("store_unavailable".into()))),
        ]),
        seen: HashMap::from([(
            ROOM.to_owned(),
            vec![seen(2, "a 2"), seen(1, "a 1"), seen(2, "a 2"), seen(3, "x")],
        )]),
        ..Record::default()
    };
    let verdict = check(&[faulty], &store, &[]);
    assert_eq!(
        (
            verdict.lost_acked,
            verdict.false_failures,
            verdict.duplicates,
            verdict.reordered,
            verdict.holes,
            verdict.corrupted
        ),
        (1, 1, 1, 1, 1, 1),
        "{verdict:#?}"
    );
}
