//! The one thread that writes the SQLite file: group commit for every room.
//!
//! Every write of the replica (appends of all rooms, read positions,
//! sessions, accounts) is a [`Job`] on one channel. The thread takes
//! everything waiting, runs each job in its own savepoint inside a single
//! transaction, commits once, and only then answers each job. A thousand
//! rooms with one message each cost one commit instead of a thousand
//! serialized ones, and no task ever blocks on a lock.
//!
//! A job that fails rolls back to its savepoint alone; the others still
//! commit. If the commit itself fails, every job of the group gets the error.
//!
//! Checkpoints are split between two threads. The writer's connection has
//! auto-checkpoint off, so no commit pays for copying the WAL back. The
//! [`Checkpointer`] copies it in the background, but under constant writes
//! it can never finish: commits land while it copies, and a WAL is only
//! reset (written again from its start) once every frame is copied. So
//! after each background pass the writer, between two groups, copies the
//! few frames written meanwhile: a pause of milliseconds instead of the
//! whole copy, and the WAL stays bounded without ever blocking on readers.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{connect, map_error};
use crate::store::{StoreError, StoreResult};

/// Most jobs committed in one transaction: bounds how long one commit takes
/// and so the latency of the jobs behind it.
const MAX_GROUP: usize = 4096;
/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// A WAL larger than this (readers kept it from being reset) is truncated
/// by the writer, waiting for readers, so it cannot grow without bound.
const WAL_LIMIT_BYTES: u64 = 256 * 1024 * 1024;
/// The writer's page cache, in KiB. Small on purpose: when an insert splits
/// a b-tree page, SQLite parks a page under the lock-byte page's number
/// (page 262145), so the commit that follows scans the whole cache's hash
/// table to drop it (`pcache1TruncateUnsafe`, 3–5 % of a busy replica's
/// CPU with the readers' 32 MiB). Appends touch few pages, and reads go
/// through the memory map, so a small cache costs the writer nothing.
const WRITER_CACHE_KIB: i64 = 2 * 1024;

/// What a job hands back after running: called with the commit's outcome.
type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// A write to run inside the group's transaction.
trait Job: Send {
    /// Runs the write in its own savepoint; the reply answers once the
    /// group's commit is known.
    fn run(self: Box<Self>, conn: &Connection) -> Reply;
    /// The group's transaction could not begin: the write never ran.
    fn fail(self: Box<Self>, err: StoreError);
    /// Chat messages it writes (for the batch-size histogram).
    fn messages(&self) -> usize;
}

struct Op<F, T> {
    op: F,
    messages: usize,
    answer: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for Op<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Reply {
        let Op { op, answer, .. } = *self;
        let result = in_savepoint(conn, op);
        Box::new(move |committed: StoreResult<()>| {
            let _ = answer.send(committed.and(result.map_err(map_error)));
        })
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.answer.send(Err(err));
    }

    fn messages(&self) -> usize {
        self.messages
    }
}

/// The handle rooms and handlers write through; cloning shares the thread.
#[derive(Clone)]
pub struct Writer {
    jobs: Sender<Box<dyn Job>>,
    /// The checkpointer runs while any handle lives.
    _alive: Arc<()>,
}

/// Set by the checkpointer after a background pass: the writer finishes it.
type Finish = Arc<std::sync::atomic::AtomicBool>;

impl Writer {
    /// Starts the writer thread on `conn`, and the checkpointer beside it.
    /// Both stop once every handle is dropped. `synchronous` is SQLite's
    /// pragma: with `FULL` every group's commit fsyncs the WAL before any
    /// of its jobs is answered, so one fsync covers the whole group.
    pub fn start(conn: Connection, path: &Path, synchronous: &str) -> rusqlite::Result<Self> {
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let (jobs, queue) = mpsc::channel();
        let finish = Finish::default();
        let wal = wal_path(path);
        {
            let finish = finish.clone();
            thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || run(conn, queue, finish, wal))
                .expect("spawning the SQLite writer thread");
        }
        let alive = Arc::new(());
        Checkpointer::start(path.to_owned(), Arc::downgrade(&alive), finish);
        Ok(Self {
            jobs,
            _alive: alive,
        })
    }

    /// Runs `op`, which writes `messages` chat messages, in the next group
    /// and answers once the group committed.
    pub async fn write<T, F>(&self, messages: usize, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Box::new(Op {
                op,
                messages,
                answer,
            }))
            .map_err(|_| StoreError::unavailable("the SQLite writer has stopped"))?;
        answered
            .await
            .map_err(|_| StoreError::unavailable("the SQLite writer has stopped"))?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match op(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(err) => {
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Err(err)
        }
    }
}

fn run(conn: Connection, queue: Receiver<Box<dyn Job>>, finish: Finish, wal: PathBuf) {
    let mut group: Vec<Box<dyn Job>> = Vec::new();
    while let Ok(first) = queue.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, group.drain(..));
        if finish.swap(false, std::sync::atomic::Ordering::AcqRel) {
            let size = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
            let mode = if size > WAL_LIMIT_BYTES {
                "TRUNCATE"
            } else {
                "PASSIVE"
            };
            checkpoint(&conn, mode);
        }
    }
}

fn checkpoint(conn: &Connection, mode: &str) {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(0)
    });
    if let Err(err) = result {
        tracing::warn!(error = %err, mode, "SQLite checkpoint failed");
    }
}

fn commit_group(conn: &Connection, group: impl Iterator<Item = Box<dyn Job>>) {
    let started = std::time::Instant::now();
    let mut replies: Vec<Reply> = Vec::new();
    let mut messages = 0;
    let mut open = false;
    for job in group {
        messages += job.messages();
        if !open {
            if let Err(err) = begin(conn) {
                job.fail(StoreError::unavailable(err));
                continue;
            }
            open = true;
        }
        replies.push(job.run(conn));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (disk
            // full, I/O error): nothing of this group so far is stored.
            let why = "the database rolled back the transaction (disk full or I/O error)";
            tracing::warn!(jobs = replies.len(), "{why}");
            for reply in replies.drain(..) {
                reply(Err(StoreError::unavailable(why)));
            }
            open = false;
        }
    }
    if !open {
        return;
    }
    let committed = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .map(drop);
    let metrics = crate::metrics::get();
    metrics
        .store_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    if messages > 0 {
        metrics.store_batch_messages.observe(messages as f64);
    }
    let outcome = match committed {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::warn!(error = %err, jobs = replies.len(), "an SQLite group commit failed");
            Err(StoreError::unavailable(err))
        }
    };
    for reply in replies {
        reply(outcome.clone());
    }
}

fn begin(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?
        .execute([])
        .map(drop)
}

/// Copies the WAL back into the database off the commit path.
struct Checkpointer {
    path: PathBuf,
    /// Gone once every [`Writer`] handle is dropped.
    alive: Weak<()>,
    finish: Finish,
}

impl Checkpointer {
    fn start(path: PathBuf, alive: Weak<()>, finish: Finish) {
        let checkpointer = Self {
            path,
            alive,
            finish,
        };
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer.run())
            .expect("spawning the SQLite checkpoint thread");
    }

    fn run(self) {
        let conn = match connect(&self.path) {
            Ok(conn) => conn,
            Err(err) => {
                tracing::error!(error = %err, "the SQLite checkpointer could not open the database; the WAL will grow");
                return;
            }
        };
        loop {
            thread::sleep(CHECKPOINT_EVERY);
            if self.alive.strong_count() == 0 {
                return;
            }
            checkpoint(&conn, "PASSIVE");
            self.finish
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = connect(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        (dir, Writer::start(conn, &path, "FULL").unwrap())
    }

    #[actix_web::test]
    async fn a_failing_job_rolls_back_alone_and_the_rest_of_its_group_commits() {
        let (_dir, writer) = writer();
        let ops = (0..50).map(|k| {
            let writer = writer.clone();
            async move {
                writer
                    .write(1, move |conn| {
                        conn.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k % 40])
                            .map(drop)
                    })
                    .await
            }
        });
        let results = futures_util::future::join_all(ops).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 10, "keys 0..10 were inserted twice");
        let count = writer
            .write(0, |conn| {
                conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            })
            .await
            .unwrap();
        assert_eq!(count, 40);
    }

    #[actix_web::test]
    async fn a_job_that_fails_half_way_leaves_nothing_behind() {
        let (_dir, writer) = writer();
        let half = writer
            .write(0, |conn| {
                conn.execute("INSERT INTO t (k, v) VALUES (1, 'a')", [])?;
                conn.execute("INSERT INTO t (k, v) VALUES (1, 'b')", [])
            })
            .await;
        assert!(half.is_err());
        let count = writer
            .write(0, |conn| {
                conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            })
            .await
            .unwrap();
        assert_eq!(
            count, 0,
            "the first insert of the failed job was rolled back"
        );
    }
}
