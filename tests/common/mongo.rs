//! A real MongoDB-protocol server for tests: SecantusDB run as a separate
//! process on a free loopback port (it is GPL-2.0 and is never linked), or
//! the server `MONGO_URL` points at.
//!
//! `scripts/test.sh` installs SecantusDB; `SECANTUSD` overrides where its
//! `secantusd-py` is found.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::free_port;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A SecantusDB process that the test owns: it can kill and restart it.
pub struct MongoServer {
    child: Option<Child>,
    port: u16,
    storage: tempfile::TempDir,
}

impl MongoServer {
    /// Starts a server on a free port with empty storage.
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            storage: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    /// A port on which nothing listens yet, for a server started later.
    pub fn unstarted() -> Self {
        Self {
            child: None,
            port: free_port(),
            storage: tempfile::tempdir().unwrap(),
        }
    }

    /// (Re)starts the server on the same port and storage.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::File::create(self.storage.path().join("server.log")).unwrap();
        let data = self.storage.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let child = Command::new(secantusd())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("secantusd-py starts (run scripts/test.sh to install SecantusDB)");
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "SecantusDB did not listen on {} within {READY_TIMEOUT:?}; see {}",
                self.port,
                self.storage.path().join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server the hard way: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: connections
    /// stay open and nothing answers, as with a hung disk or a partition.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Stops the server and keeps its files (and log) for a post-mortem.
    pub fn keep(mut self) -> PathBuf {
        self.kill();
        let storage = std::mem::replace(&mut self.storage, tempfile::tempdir().unwrap());
        storage.keep()
    }

    pub fn url(&self, database: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A database of its own for one test, on `MONGO_URL`'s server if set,
/// otherwise on a SecantusDB started for it.
pub struct TestMongo {
    pub url: String,
    _server: Option<MongoServer>,
}

impl TestMongo {
    pub fn new() -> Self {
        let database = unique_database();
        match std::env::var("MONGO_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            Some(url) => Self {
                url: with_database(&url, &database),
                _server: None,
            },
            None => {
                let server = MongoServer::start();
                Self {
                    url: server.url(&database),
                    _server: Some(server),
                }
            }
        }
    }
}

/// A store handle onto the database at `url`, as a replica would open it
/// (not migrated).
pub async fn store_at(url: &str) -> rookery::store::mongo::MongoStore {
    let config = rookery::config::MongoConfig {
        url: Some(url.to_owned()),
        host: None,
        port: 27017,
        username: None,
        password: None,
        database: "unused".into(),
    };
    rookery::store::mongo::MongoStore::connect(&config)
        .await
        .expect("a well-formed MongoDB URL")
}

fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("SECANTUSD") {
        return path.into();
    }
    let cached = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/rookery/secantus/bin/secantusd-py"));
    match cached {
        Some(path) if path.exists() => path,
        _ => "secantusd-py".into(),
    }
}

fn unique_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rookery_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its database path replaced, options kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let hosts_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |at| scheme_end + at);
    let mut rebuilt = format!("{}/{database}", &base[..hosts_end]);
    if !query.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(query);
    }
    rebuilt
}
