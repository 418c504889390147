//! `verify`: an operator's check of a live deployment, through its load
//! balancer, while they restart replicas (a rolling upgrade). Clients in
//! one room send on a clock for a while, reconnecting and resuming
//! whenever their connection breaks, as a careful client does (acks by
//! `ref`, `retry:true` after a reconnect, `resume` from the last seq).
//! Afterwards every message acked to anyone must have reached every
//! client that was in the room when it was stored: once, in seq order.
//! Presence must agree: each client ends seeing every other one online.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::peer::PASSWORD;

/// How long a client waits before connecting again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(300);
/// After the sending time: quiet this long, with every send answered, and
/// a client is done.
const QUIET: Duration = Duration::from_secs(3);

/// What `verify` is asked to do.
pub struct Verify {
    /// `http://127.0.0.1:PORT`: the load balancer (or one replica).
    pub target: String,
    /// The `Host` the load balancer routes by (traefik's rule), if any.
    pub host: Option<String>,
    pub clients: usize,
    pub duration: Duration,
    pub interval: Duration,
    /// How long after the sending time clients may take to settle.
    pub settle: Duration,
    pub room: String,
}

/// One client's account of the run.
#[derive(Default)]
struct Log {
    name: String,
    /// Where the room stood at its first `joined`: it answers for what
    /// was stored after.
    start: Option<u64>,
    /// The room's messages as they arrived (live and replayed): seq, text.
    seen: Vec<(u64, String)>,
    /// Our sends: ref → seq once acked.
    acked: HashMap<String, u64>,
    sent: usize,
    refused: usize,
    /// Ended with sends unanswered, or never quiet: it did not settle in
    /// time, and what it lacks is unknown.
    unsettled: bool,
    connections: usize,
    online: Vec<String>,
}

impl Verify {
    pub async fn run(&self) -> anyhow::Result<()> {
        let addr = self
            .target
            .strip_prefix("http://")
            .context("the target is http://127.0.0.1:PORT")?
            .trim_end_matches('/')
            .to_owned();
        let ip: std::net::SocketAddr = addr.parse().context("the target's address")?;
        anyhow::ensure!(
            ip.ip().is_loopback(),
            "rookery-bench only targets loopback addresses, not {}",
            ip.ip()
        );
        let run = crate::peer::stamp() % 1_000_000;
        let names: Vec<String> = (0..self.clients)
            .map(|n| format!("verify{run}x{n}"))
            .collect();
        let began = Instant::now();
        let tasks: Vec<_> = names
            .iter()
            .map(|name| tokio::spawn(client(self.plan(&addr, name, began))))
            .collect();
        let mut logs = Vec::new();
        for task in tasks {
            logs.push(task.await.context("a client panicked")??);
        }
        let verdict = check(&logs);
        verdict.print(&logs);
        if verdict.failed() {
            bail!("messages were lost, repeated or out of order, presence disagreed, or clients did not settle");
        }
        Ok(())
    }

    fn plan(&self, addr: &str, name: &str, began: Instant) -> Plan {
        Plan {
            addr: addr.to_owned(),
            host: self.host.clone(),
            name: name.to_owned(),
            room: self.room.clone(),
            interval: self.interval,
            sending_until: began + self.duration,
            give_up: began + self.duration + self.settle,
        }
    }
}

/// One client's instructions.
struct Plan {
    addr: String,
    host: Option<String>,
    name: String,
    room: String,
    interval: Duration,
    sending_until: Instant,
    give_up: Instant,
}

async fn login(plan: &Plan) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut request = http
        .post(format!("http://{}/login", plan.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={}&password={PASSWORD}", plan.name));
    if let Some(host) = &plan.host {
        request = request.header("host", host);
    }
    let response = request.send().await.context("login request")?;
    crate::peer::session_cookie(&plan.name, &response)
}

/// Sends on the clock until `sending_until`, reconnecting and resuming
/// whenever the connection breaks, then waits for every answer.
async fn client(plan: Plan) -> anyhow::Result<Log> {
    let mut log = Log {
        name: plan.name.clone(),
        ..Log::default()
    };
    let mut cookie = None;
    // Sent and not answered: ref → frame, sent again (as a retry) on the
    // next connection.
    let mut unanswered: BTreeMap<String, Value> = BTreeMap::new();
    let mut count = 0u64;
    let mut next_send = Instant::now();
    while Instant::now() < plan.give_up {
        if cookie.is_none() {
            cookie = login(&plan).await.ok();
        }
        let Some(session) = &cookie else {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        let mut request = format!("ws://{}/ws", plan.addr).into_client_request()?;
        request.headers_mut().insert("cookie", session.parse()?);
        if let Some(host) = &plan.host {
            request.headers_mut().insert("host", host.parse()?);
        }
        let mut socket = match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => socket,
            Err(err) => {
                // A login the deployment no longer knows: log in again.
                if matches!(&err, Error::Http(response) if response.status() == 401) {
                    cookie = None;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        log.connections += 1;
        let opening = match log.start {
            None => json!({"type": "join", "room": plan.room}),
            Some(start) => {
                let last = log
                    .seen
                    .iter()
                    .map(|(seq, _)| *seq)
                    .max()
                    .unwrap_or(start)
                    .max(start);
                json!({"type": "resume", "rooms": {plan.room.as_str(): last}})
            }
        };
        if socket
            .send(Message::text(opening.to_string()))
            .await
            .is_err()
        {
            continue;
        }
        let mut joined = false;
        let mut last_frame = Instant::now();
        loop {
            let now = Instant::now();
            if now >= plan.give_up {
                break;
            }
            if now >= plan.sending_until
                && unanswered.is_empty()
                && now.duration_since(last_frame) >= QUIET
            {
                return Ok(log);
            }
            if joined && now < plan.sending_until && now >= next_send {
                count += 1;
                let reference = format!("{}-{count}", plan.name);
                let frame =
                    json!({"type": "send", "room": plan.room, "text": reference, "ref": reference});
                log.sent += 1;
                unanswered.insert(reference, frame.clone());
                next_send = now + plan.interval;
                if socket.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
            }
            let frame = match tokio::time::timeout(Duration::from_millis(100), socket.next()).await
            {
                Err(_) => continue,
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
                Ok(Some(Ok(_))) => continue,
            };
            last_frame = Instant::now();
            let Ok(frame) = serde_json::from_str::<Value>(&frame) else {
                continue;
            };
            match frame["type"].as_str() {
                Some("joined") if frame["room"] == plan.room.as_str() => {
                    let first = log.start.is_none();
                    if first {
                        log.start = frame["seq"].as_u64().or(Some(0));
                    } else {
                        let since = log.seen.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
                        for message in frame["history"].as_array().into_iter().flatten() {
                            if let Some(seq) = message["seq"].as_u64().filter(|seq| *seq > since) {
                                log.seen.push((seq, text_of(message)));
                            }
                        }
                    }
                    log.online = names(&frame["online"]);
                    joined = true;
                    // What went unanswered on the last connection goes
                    // again: stored once either way.
                    for frame in unanswered.values() {
                        let mut retry = frame.clone();
                        retry["retry"] = json!(true);
                        if socket.send(Message::text(retry.to_string())).await.is_err() {
                            break;
                        }
                    }
                }
                Some("message") if frame["room"] == plan.room.as_str() => {
                    if let Some(seq) = frame["seq"].as_u64() {
                        log.seen.push((seq, text_of(&frame)));
                    }
                }
                Some("ack") => {
                    if let (Some(reference), Some(seq)) =
                        (frame["ref"].as_str(), frame["seq"].as_u64())
                    {
                        unanswered.remove(reference);
                        log.acked.insert(reference.to_owned(), seq);
                    }
                }
                Some("error") => {
                    let retryable = matches!(
                        frame["code"].as_str(),
                        Some("store_uncertain" | "overloaded" | "rate_limited")
                    );
                    if let Some(reference) = frame["ref"].as_str().filter(|_| !retryable) {
                        if unanswered.remove(reference).is_some() {
                            log.refused += 1;
                        }
                    }
                }
                Some("presence") if frame["room"] == plan.room.as_str() => {
                    log.online = names(&frame["online"]);
                }
                Some("reconnect") => break,
                _ => {}
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
    log.unsettled = true;
    Ok(log)
}

fn text_of(message: &Value) -> String {
    message["text"].as_str().unwrap_or_default().to_owned()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect()
}

#[derive(Default)]
struct Verdict {
    acked: usize,
    lost: usize,
    repeated: usize,
    out_of_order: usize,
    /// Clients that did not end seeing every client online.
    presence: usize,
    /// Clients that did not settle within the time given.
    unsettled: usize,
    /// Seqs that came with two different messages (a store that handed
    /// one out twice, or lost what it had acked and started over).
    conflicts: usize,
}

impl Verdict {
    fn failed(&self) -> bool {
        self.lost
            + self.repeated
            + self.out_of_order
            + self.presence
            + self.unsettled
            + self.conflicts
            > 0
    }

    fn print(&self, logs: &[Log]) {
        let sent: usize = logs.iter().map(|log| log.sent).sum();
        let refused: usize = logs.iter().map(|log| log.refused).sum();
        let connections: usize = logs.iter().map(|log| log.connections).sum();
        println!(
            "verify: {} clients, {connections} connections, {sent} sent, {} acked, {refused} refused",
            logs.len(),
            self.acked
        );
        println!(
            "verify: lost {}, repeated {}, out of order {}, seqs with two messages {}, presence disagreeing {}, unsettled {}",
            self.lost, self.repeated, self.out_of_order, self.conflicts, self.presence, self.unsettled
        );
    }
}

/// Every acked message against what each client saw. A message is its
/// seq and its text (each client's texts are unique: the ref).
fn check(logs: &[Log]) -> Verdict {
    let acked: HashSet<(u64, &str)> = logs
        .iter()
        .flat_map(|log| log.acked.iter().map(|(text, seq)| (*seq, text.as_str())))
        .collect();
    let everyone: HashSet<&str> = logs.iter().map(|log| log.name.as_str()).collect();
    let mut verdict = Verdict {
        acked: acked.len(),
        ..Verdict::default()
    };
    let mut held: HashMap<u64, HashSet<&str>> = HashMap::new();
    for (seq, text) in acked.iter().copied().chain(
        logs.iter()
            .flat_map(|log| log.seen.iter().map(|(seq, text)| (*seq, text.as_str()))),
    ) {
        held.entry(seq).or_default().insert(text);
    }
    verdict.conflicts = held.values().filter(|texts| texts.len() > 1).count();
    for log in logs {
        let start = log.start.unwrap_or(u64::MAX);
        let mut seen = HashSet::new();
        let mut newest = 0;
        for (seq, text) in &log.seen {
            if !seen.insert((*seq, text.as_str())) {
                verdict.repeated += 1;
            } else if *seq < newest {
                verdict.out_of_order += 1;
            }
            newest = newest.max(*seq);
        }
        verdict.lost += acked
            .iter()
            .filter(|(seq, _)| *seq > start)
            .filter(|message| !seen.contains(message))
            .count();
        verdict.unsettled += usize::from(log.unsettled);
        let online: HashSet<&str> = log.online.iter().map(String::as_str).collect();
        if !everyone.is_subset(&online) {
            verdict.presence += 1;
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's log; message `n` says `m{n}` whoever sent it.
    fn log(name: &str, start: u64, seen: &[u64], acked: &[u64], online: &[&str]) -> Log {
        Log {
            name: name.into(),
            start: Some(start),
            seen: seen.iter().map(|seq| (*seq, format!("m{seq}"))).collect(),
            acked: acked.iter().map(|seq| (format!("m{seq}"), *seq)).collect(),
            online: online.iter().map(|name| (*name).to_owned()).collect(),
            ..Log::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let logs = [
            log("a", 0, &[1, 2, 3], &[1, 3], &["a", "b"]),
            log("b", 0, &[1, 2, 3], &[2], &["a", "b"]),
        ];
        assert!(!check(&logs).failed());
    }

    #[test]
    fn each_kind_of_failure_is_counted() {
        let logs = [
            // Missed 2 (acked to b), saw 3 twice, and 1 after 3.
            log("a", 0, &[3, 3, 1], &[1, 3], &["a", "b"]),
            log("b", 0, &[1, 2, 3], &[2], &["b"]),
        ];
        let verdict = check(&logs);
        assert_eq!(
            (
                verdict.lost,
                verdict.repeated,
                verdict.out_of_order,
                verdict.presence
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn a_seq_handed_out_twice_is_caught() {
        let mut restarted = log("a", 0, &[1, 2], &[1, 2], &["a"]);
        // The store lost 1 and 2 and gave their seqs to new messages.
        restarted.acked.insert("again".into(), 1);
        assert_eq!(check(&[restarted]).conflicts, 1);
    }

    #[test]
    fn what_was_stored_before_a_client_joined_is_not_its_loss() {
        let logs = [
            log("a", 0, &[1, 2, 3], &[1, 2, 3], &["a", "b"]),
            log("b", 2, &[3], &[], &["a", "b"]),
        ];
        assert!(!check(&logs).failed());
    }
}
