//! The room's write queue, a plain part: posts wait in arrival order, at
//! most one batch of them is being stored, a batch holds at most
//! [`MAX_BATCH`], and a post whose backend stopped waiting is never
//! stored. Each post keeps its place in the replica's backlog until the
//! store answered its batch; the actor (`writes.rs`) only runs the store
//! call and answers the authors.

use std::collections::VecDeque;
use std::time::Instant;

use super::Reply;
use crate::event::Event;
use crate::protocol::Ref;
use crate::store::backlog::Permit;
use crate::store::NewEvent;

/// Most posts persisted in one store call.
pub const MAX_BATCH: usize = 256;

/// Where a stored message's `ack` goes: the author's `ref` and connection
/// (or request).
pub(super) type AckTo = (Option<Ref>, Reply);

/// A post waiting for the store.
pub(super) struct Queued {
    pub(super) message: NewEvent,
    /// When the room took it: its ack's latency runs from here.
    pub(super) accepted: Instant,
    pub(super) avatar: Option<String>,
    /// `None` for a `fast` message: delivered already, never acked.
    pub(super) ack_to: Option<AckTo>,
    /// Its place in the backlog, given back once the store answered.
    pub(super) permit: Permit,
}

/// A post being stored, as the room must answer it.
pub(super) struct Waiting {
    /// The id the room gave it: a retry found stored comes back under its
    /// original's.
    pub(super) id: String,
    /// A retry: its first attempt may be stored, so a failure to store this
    /// one is never reported as "not stored".
    pub(super) retry: bool,
    pub(super) accepted: Instant,
    pub(super) avatar: Option<String>,
    pub(super) ack_to: Option<AckTo>,
    _permit: Permit,
}

impl Waiting {
    /// Whether the store stored this post as `stored`, rather than finding
    /// it a retry of a message it had (which comes back under its
    /// original's id, and must not be counted or published again).
    pub(super) fn is_new(&self, stored: &Event) -> bool {
        stored.id() == self.id
    }
}

/// What goes to the store in one call, and who waits for it, in the same
/// order.
pub(super) struct Batch {
    pub(super) messages: Vec<NewEvent>,
    pub(super) waiting: Vec<Waiting>,
}

#[derive(Default)]
pub(super) struct WriteQueue {
    pending: VecDeque<Queued>,
    /// A batch is with the store.
    storing: bool,
}

impl WriteQueue {
    pub(super) fn push(&mut self, queued: Queued) {
        self.pending.push_back(queued);
    }

    /// The next batch to store, unless one is being stored or nothing
    /// waits: the oldest posts, at most [`MAX_BATCH`], without those whose
    /// backend stopped waiting (it was told `store_uncertain` and retries;
    /// storing this one too would store it twice).
    pub(super) fn take(&mut self) -> Option<Batch> {
        if self.storing {
            return None;
        }
        self.pending.retain(|queued| {
            !queued
                .ack_to
                .as_ref()
                .is_some_and(|(_, reply)| reply.abandoned())
        });
        if self.pending.is_empty() {
            return None;
        }
        self.storing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let mut messages = Vec::with_capacity(take);
        let mut waiting = Vec::with_capacity(take);
        for queued in self.pending.drain(..take) {
            waiting.push(Waiting {
                id: queued.message.id.clone(),
                retry: queued.message.retry,
                accepted: queued.accepted,
                avatar: queued.avatar,
                ack_to: queued.ack_to,
                _permit: queued.permit,
            });
            messages.push(queued.message);
        }
        Some(Batch { messages, waiting })
    }

    /// The store answered the batch in flight (stored or not): the next
    /// one may go.
    pub(super) fn answered(&mut self) {
        self.storing = false;
    }

    /// Nothing waits and nothing is being stored: a retired room may stop.
    pub(super) fn is_empty(&self) -> bool {
        !self.storing && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::chat::room::Outcome;
    use crate::store::backlog::Backlog;

    fn post(backlog: &Backlog, text: &str) -> (Queued, oneshot::Receiver<Outcome>) {
        let (answer, outcome) = oneshot::channel();
        let queued = Queued {
            message: NewEvent {
                id: format!("id-{text}"),
                from: "alice".into(),
                draft: crate::store::Draft::Message(text.into()),
                to: None,
                confirm: None,
                reference: None,
                retry: false,
            },
            accepted: Instant::now(),
            avatar: None,
            ack_to: Some((None, Reply::Api(answer))),
            permit: backlog.admit(text.len()).expect("room in the backlog"),
        };
        (queued, outcome)
    }

    fn texts(batch: &Batch) -> Vec<&str> {
        batch.messages.iter().map(|m| m.draft.text()).collect()
    }

    #[test]
    fn one_batch_at_a_time_in_arrival_order() {
        let backlog = Backlog::new(1000, 1 << 20);
        let mut queue = WriteQueue::default();
        let mut answers = Vec::new();
        for text in ["a", "b"] {
            let (queued, answer) = post(&backlog, text);
            queue.push(queued);
            answers.push(answer);
        }
        let first = queue.take().expect("a batch");
        assert_eq!(texts(&first), ["a", "b"]);
        let (queued, _answer) = post(&backlog, "c");
        queue.push(queued);
        assert!(queue.take().is_none(), "one batch in flight");
        assert!(!queue.is_empty());
        queue.answered();
        assert_eq!(texts(&queue.take().expect("the next batch")), ["c"]);
        queue.answered();
        assert!(queue.is_empty());
        assert!(queue.take().is_none(), "nothing waits");
    }

    #[test]
    fn a_batch_holds_at_most_max_batch() {
        let backlog = Backlog::new(1000, 1 << 20);
        let mut queue = WriteQueue::default();
        let mut answers = Vec::new();
        for n in 0..MAX_BATCH + 10 {
            let (queued, answer) = post(&backlog, &n.to_string());
            queue.push(queued);
            answers.push(answer);
        }
        let first = queue.take().unwrap();
        assert_eq!(first.messages.len(), MAX_BATCH);
        assert_eq!(first.waiting.len(), MAX_BATCH);
        queue.answered();
        let rest = queue.take().unwrap();
        assert_eq!(texts(&rest).first(), Some(&MAX_BATCH.to_string().as_str()));
        assert_eq!(rest.messages.len(), 10);
    }

    #[test]
    fn a_post_nobody_waits_for_is_not_stored_and_frees_its_place() {
        let backlog = Backlog::new(1000, 1 << 20);
        let mut queue = WriteQueue::default();
        let (kept, _kept_answer) = post(&backlog, "kept");
        let (abandoned, gone) = post(&backlog, "abandoned");
        queue.push(kept);
        queue.push(abandoned);
        drop(gone);
        assert_eq!(backlog.messages(), 2);
        let batch = queue.take().unwrap();
        assert_eq!(texts(&batch), ["kept"]);
        assert_eq!(backlog.messages(), 1, "the abandoned post left the backlog");
    }

    #[test]
    fn posts_hold_their_backlog_place_until_the_store_answered() {
        let backlog = Backlog::new(1000, 1 << 20);
        let mut queue = WriteQueue::default();
        let (queued, _answer) = post(&backlog, "x");
        queue.push(queued);
        let batch = queue.take().unwrap();
        assert_eq!(backlog.messages(), 1, "still waiting for the store");
        let Batch { messages, waiting } = batch;
        drop(messages);
        assert_eq!(backlog.messages(), 1);
        drop(waiting);
        assert_eq!(backlog.messages(), 0);
    }

    #[test]
    fn a_retry_found_stored_is_not_new() {
        let backlog = Backlog::new(1000, 1 << 20);
        let mut queue = WriteQueue::default();
        let (queued, _answer) = post(&backlog, "x");
        queue.push(queued);
        let batch = queue.take().unwrap();
        let waiting = &batch.waiting[0];
        let stored = Event::message("lobby", 1, "id-x", "alice", 0, "x");
        let original = Event::message("lobby", 1, "earlier", "alice", 0, "x");
        assert!(waiting.is_new(&stored));
        assert!(!waiting.is_new(&original));
    }
}
