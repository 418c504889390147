//! A compose stack as its users meet it: five replicas behind traefik at
//! `app.docker.localhost`, each client pinned to one by the sticky cookie.
//! Run by `scripts/stacks.sh` against a stack it started (ignored by a
//! plain `cargo test`: it needs Docker and a running stack). Environment:
//! `STACK_URL` (traefik, http://127.0.0.1:PORT), `STACK_PROJECT` (the
//! compose project, whose app containers it stops and kills), and
//! `STACK_REPLICAS` (5).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Ws, PNG};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const HOST: &str = "app.docker.localhost";
const ROOM: &str = "stack";
const CLIENTS: usize = 10;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by scripts/stacks.sh"))
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(output.status.success(), "docker {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The stack's app containers: container id → name.
fn app_containers(project: &str) -> BTreeMap<String, String> {
    docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "label=com.docker.compose.service=app",
        "--format",
        "{{.ID}} {{.Names}}",
    ])
    .lines()
    .filter_map(|line| line.split_once(' '))
    .map(|(id, name)| (id.to_owned(), name.to_owned()))
    .collect()
}

/// The replica this client's cookie pins it to (its node id); `None` while
/// traefik has no live replica for it.
async fn node_of(client: &Client) -> Option<String> {
    let response = client
        .http
        .get(format!("{}/healthz", client.base))
        .send()
        .await
        .ok()?;
    let health: Value = response.json().await.ok()?;
    health["node"].as_str().map(str::to_owned)
}

/// The container a node id names (`NODE_ID` defaults to the hostname,
/// the container id, and a suffix).
fn container_of(node: &str, containers: &BTreeMap<String, String>) -> String {
    containers
        .iter()
        .find(|(id, _)| node.starts_with(id.as_str()))
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| panic!("no container for node {node}: {containers:?}"))
}

struct User {
    name: String,
    client: Client,
    ws: Ws,
    node: String,
    /// Room messages by seq, as received (live or replayed).
    seen: Vec<u64>,
}

impl User {
    fn last(&self) -> u64 {
        self.seen.iter().copied().max().unwrap_or(0)
    }

    /// Reads frames for `wait`, noting room messages.
    async fn read_for(&mut self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        while let Some(frame) = self.ws.next_before(until).await {
            if frame["type"] == "message" && frame["room"] == ROOM {
                self.seen.push(frame["seq"].as_u64().unwrap());
            }
        }
    }
}

#[actix_web::test]
#[ignore = "needs a running compose stack: scripts/stacks.sh"]
async fn five_replicas_behind_traefik_chat_as_one() {
    let base = env("STACK_URL");
    let project = env("STACK_PROJECT");
    let replicas: usize = env("STACK_REPLICAS").parse().unwrap();
    let started = Instant::now();

    // Logged in through traefik, each client pinned by its cookie; enough
    // clients that every replica has some.
    let mut users: Vec<User> = Vec::new();
    for n in 0..CLIENTS * 3 {
        let covered: BTreeSet<&str> = users.iter().map(|u| u.node.as_str()).collect();
        if users.len() >= CLIENTS && covered.len() == replicas {
            break;
        }
        let name = format!("u{n}");
        let client = Client::via_proxy(base.clone(), HOST);
        client.login(&name).await;
        let node = node_of(&client).await.expect("a replica answers");
        assert_eq!(
            node_of(&client).await.as_ref(),
            Some(&node),
            "{name} stays on its replica"
        );
        let mut ws = client.ws().await;
        ws.join(ROOM).await;
        users.push(User {
            name,
            client,
            ws,
            node,
            seen: Vec::new(),
        });
    }
    let nodes: BTreeSet<String> = users.iter().map(|u| u.node.clone()).collect();
    assert_eq!(nodes.len(), replicas, "clients on every replica: {nodes:?}");
    println!("stage login: {:.1} s", started.elapsed().as_secs_f64());

    // Presence: everyone, on every replica.
    let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let everyone: Vec<&str> = sorted.iter().map(String::as_str).collect();
    for user in &mut users {
        user.ws
            .wait_online(ROOM, &everyone, Duration::from_secs(20))
            .await;
    }

    // Chat: each sends a few; everyone gets all, once, in seq order.
    let stage = Instant::now();
    let mut acked = Vec::new();
    for round in 0..3 {
        for user in &mut users {
            let seq = user
                .ws
                .say(
                    ROOM,
                    &format!("{} {round}", user.name),
                    &format!("r{round}"),
                )
                .await;
            acked.push(seq);
        }
    }
    acked.sort();
    for user in &mut users {
        let got = user.ws.messages(acked.len()).await;
        let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs, acked,
            "{} got every message once, in order",
            user.name
        );
        user.seen.extend(seqs);
    }
    // A direct message between clients on different replicas.
    let (a, b) = (
        0,
        users.iter().position(|u| u.node != users[0].node).unwrap(),
    );
    let to = users[b].name.clone();
    let ack = users[a].ws.direct(&to, "psst", "d1").await;
    let dm = users[b].ws.recv_type("message").await;
    assert_eq!(
        (dm["text"].as_str(), dm["seq"].as_u64()),
        (Some("psst"), ack["seq"].as_u64())
    );
    println!("stage chat: {:.1} s", stage.elapsed().as_secs_f64());

    // An avatar uploaded through one replica is served by another.
    let stage = Instant::now();
    let form = Form::new().part("avatar", Part::bytes(PNG.to_vec()).file_name("me.png"));
    let uploaded: Value = users[a]
        .client
        .http
        .post(format!("{base}/avatar"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = uploaded["avatar"].as_str().unwrap().to_owned();
    let served = users[b].client.get(&path).await;
    assert_eq!(served.status(), 200, "{path} from {}", users[b].node);
    // Our own encoding of the photo's pixels, from the shared volume.
    let served = image::load_from_memory(&served.bytes().await.unwrap()).unwrap();
    assert_eq!(
        served.to_rgba8(),
        image::load_from_memory(PNG).unwrap().to_rgba8()
    );
    println!("stage avatar: {:.1} s", stage.elapsed().as_secs_f64());

    // One replica drains (SIGTERM, as `docker compose stop` sends), another
    // is killed; both sets of clients come back through traefik elsewhere
    // and resume with nothing lost. Messages keep coming meanwhile.
    let stage = Instant::now();
    let containers = app_containers(&project);
    let mut by_node: Vec<&str> = nodes.iter().map(String::as_str).collect();
    by_node.sort();
    let (drained, killed) = (by_node[0].to_owned(), by_node[1].to_owned());
    let steady: usize = users
        .iter()
        .position(|u| u.node != drained && u.node != killed)
        .unwrap();
    let stop_name = container_of(&drained, &containers);
    let kill_name = container_of(&killed, &containers);
    let stopping = std::thread::spawn(move || docker(&["stop", "--time", "20", &stop_name]));
    docker(&["kill", &kill_name]);
    for n in 0..10 {
        acked.push(
            users[steady]
                .ws
                .say(ROOM, &format!("during {n}"), &format!("x{n}"))
                .await,
        );
    }
    stopping.join().unwrap();
    let moved: Vec<usize> = (0..users.len())
        .filter(|&i| users[i].node == drained || users[i].node == killed)
        .collect();
    for &i in &moved {
        let user = &mut users[i];
        // Whatever the old socket had left, then a new one through traefik.
        user.read_for(Duration::from_millis(200)).await;
        let since = user.last();
        // Pinned anew by traefik once its health check has dropped the
        // old replica; the WebSocket then follows the new cookie.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (node, reconnected) = loop {
            assert!(
                Instant::now() < deadline,
                "no live replica took the user back within a minute"
            );
            match node_of(&user.client).await {
                Some(node) if node != drained && node != killed => {
                    if let Ok(ws) = user.client.try_ws().await {
                        break (node, ws);
                    }
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        user.ws = reconnected;
        user.node = node;
        let history = user.ws.resume(ROOM, since).await;
        user.seen
            .extend(history.iter().map(|m| m["seq"].as_u64().unwrap()));
    }
    for n in 0..5 {
        acked.push(
            users[moved[0]]
                .ws
                .say(ROOM, &format!("after {n}"), &format!("y{n}"))
                .await,
        );
    }
    acked.sort();
    let newest = *acked.last().unwrap();
    for user in &mut users {
        let deadline = Instant::now() + Duration::from_secs(20);
        while user.last() < newest && Instant::now() < deadline {
            user.read_for(Duration::from_millis(300)).await;
        }
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for seq in &user.seen {
            *counts.entry(*seq).or_default() += 1;
        }
        let twice: Vec<u64> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| *s)
            .collect();
        assert!(twice.is_empty(), "{} got {twice:?} twice", user.name);
        assert!(
            user.seen.windows(2).all(|pair| pair[0] < pair[1]),
            "{} got them out of order: {:?}",
            user.name,
            user.seen
        );
        let first = *user.seen.iter().min().unwrap();
        let have: BTreeSet<u64> = user.seen.iter().copied().collect();
        let holes: Vec<u64> = (first..=newest).filter(|seq| !have.contains(seq)).collect();
        assert!(holes.is_empty(), "{} never got {holes:?}", user.name);
        for seq in &acked {
            assert!(have.contains(seq), "{} lacks acked {seq}", user.name);
        }
    }
    println!(
        "stage failover ({} clients moved): {:.1} s",
        moved.len(),
        stage.elapsed().as_secs_f64()
    );
}

/// The basic stack: one app and its database, at its published port.
#[actix_web::test]
#[ignore = "needs a running compose stack: scripts/stacks.sh"]
async fn one_app_and_its_database() {
    let base = env("STACK_URL");
    let client = Client::via_proxy(base, "localhost");
    client.login("solo").await;
    let mut ws = client.ws().await;
    ws.join(ROOM).await;
    let seq = ws.say(ROOM, "hello", "h1").await;
    let message = ws.recv_type("message").await;
    assert_eq!(
        (message["seq"].as_u64(), message["text"].as_str()),
        (Some(seq), Some("hello"))
    );
    // Stored in the database: a second connection's history has it.
    let mut again = client.ws().await;
    let joined = again.join(ROOM).await;
    assert_eq!(joined["history"][0]["text"], "hello");
}
