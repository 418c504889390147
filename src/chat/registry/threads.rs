//! The threads rooms run on: the HTTP workers' own.
//!
//! A room on a thread of its own costs every message two handoffs between
//! threads (the member's connection to the room, the room back to each
//! connection), and on a busy core each handoff is a context switch.
//! On the workers' threads a room shares its thread with the connections
//! of that worker: with one worker (`WORKERS=1`), every message stays on
//! one thread until it reaches the store's writer. Rooms are spread
//! round-robin over the workers, so several cores still share the fan-out.

use std::sync::{Arc, Mutex};

use actix::prelude::*;

/// The arbiters rooms may start on; shared by the registry and the HTTP
/// server, whose workers add themselves as they start.
#[derive(Clone, Default)]
pub struct RoomThreads(Arc<Mutex<Vec<ArbiterHandle>>>);

impl RoomThreads {
    /// Offers the calling thread's arbiter (an HTTP worker starting up).
    pub fn add_current(&self) {
        self.threads().push(Arbiter::current());
    }

    /// The arbiter for the `n`th room started. Until a worker has offered
    /// itself (no connection can have joined anything yet), the caller's.
    /// A worker that stopped (a restart after a panic) is dropped.
    pub fn pick(&self, n: usize) -> ArbiterHandle {
        let mut threads = self.threads();
        threads.retain(|arbiter| arbiter.spawn(async {}));
        if threads.is_empty() {
            return Arbiter::current();
        }
        threads[n % threads.len()].clone()
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<ArbiterHandle>> {
        // A panic while holding it left a plain Vec behind: still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn rooms_go_round_robin_and_skip_stopped_workers() {
        let threads = RoomThreads::default();
        let workers: Vec<Arbiter> = (0..2).map(|_| Arbiter::new()).collect();
        for worker in &workers {
            let threads = threads.clone();
            let (done, added) = tokio::sync::oneshot::channel();
            worker.spawn(async move {
                threads.add_current();
                let _ = done.send(());
            });
            added.await.unwrap();
        }
        let thread_of = |arbiter: ArbiterHandle| async move {
            let (tell, told) = tokio::sync::oneshot::channel();
            arbiter.spawn(async move {
                let _ = tell.send(std::thread::current().id());
            });
            told.await.unwrap()
        };
        let first = thread_of(threads.pick(0)).await;
        let second = thread_of(threads.pick(1)).await;
        assert_ne!(first, second, "two rooms, two workers");
        assert_eq!(thread_of(threads.pick(2)).await, first);

        let [one, two] = <[Arbiter; 2]>::try_from(workers).ok().unwrap();
        one.stop();
        one.join().unwrap();
        let survivor = thread_of(two.handle()).await;
        for n in 0..3 {
            assert_eq!(
                thread_of(threads.pick(n)).await,
                survivor,
                "a stopped worker gets no room"
            );
        }
        two.stop();
        two.join().unwrap();
        assert_eq!(
            thread_of(threads.pick(0)).await,
            std::thread::current().id(),
            "no worker left: the caller's own"
        );
    }
}
