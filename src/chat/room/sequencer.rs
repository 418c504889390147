//! Puts a room's stored events in `seq` order, each exactly once.
//!
//! It orders anything [`Sequenced`] and never looks inside: messages today,
//! any other kind of event alike. Events reach a room from its own appends, from the other replicas (in
//! any order, or not at all while the broker is down) and from the store
//! (catch-up, gap fills). The sequencer is the one place that decides what
//! members see next: nothing at or below `delivered` is handed out again,
//! anything ahead of a missing `seq` is held, and `delivered` only ever
//! moves forward, whatever order reads complete in.

use std::collections::BTreeMap;

use crate::event::Sequenced;

/// Most messages read from the store in one fill.
pub const MAX_FILL: u32 = 500;

#[derive(Debug)]
pub struct Sequencer<T> {
    /// Every message up to here has been handed out; `None` until the room
    /// learns where its sequence stands.
    delivered: Option<u64>,
    /// Messages that arrived ahead of a missing `seq`.
    held: BTreeMap<u64, T>,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Self {
            delivered: None,
            held: BTreeMap::new(),
        }
    }
}

/// A read that fills every gap at once: the messages after `after`, at most
/// `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub after: u64,
    pub limit: u32,
}

impl<T: Sequenced> Sequencer<T> {
    pub fn delivered(&self) -> Option<u64> {
        self.delivered
    }

    /// Whether messages wait for a missing one.
    pub fn has_gap(&self) -> bool {
        !self.held.is_empty()
    }

    /// Starts the sequence after `newest` if it has not started yet (a
    /// room's first read of the store). Returns where it stands.
    pub fn start_at(&mut self, newest: u64) -> u64 {
        *self.delivered.get_or_insert(newest)
    }

    /// Takes messages from anywhere and returns those now next in order.
    /// Duplicates and messages at or below `delivered` are dropped.
    pub fn accept(&mut self, messages: Vec<T>) -> Vec<T> {
        for message in messages {
            // Before any read of the store, the first message seen starts
            // the sequence: earlier ones predate every member here.
            let seq = message.seq();
            let delivered = *self.delivered.get_or_insert(seq.saturating_sub(1));
            if seq > delivered {
                self.held.entry(seq).or_insert(message);
            }
        }
        self.release()
    }

    fn release(&mut self) -> Vec<T> {
        let Some(mut delivered) = self.delivered else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        while let Some(message) = self.held.remove(&(delivered + 1)) {
            delivered = message.seq();
            ready.push(message);
        }
        self.delivered = Some(delivered);
        ready
    }

    /// The read that would fill every gap before the newest held message.
    pub fn fill(&self) -> Option<Fill> {
        let delivered = self.delivered?;
        let (&last, _) = self.held.last_key_value()?;
        let missing = last.saturating_sub(delivered + 1).max(1);
        Some(Fill {
            after: delivered,
            limit: missing.min(u64::from(MAX_FILL)) as u32,
        })
    }

    /// The store's answer to `fill`: delivers what it can, and returns
    /// whether to read on at once (the read was cut at its limit).
    ///
    /// The store hands out `seq`s without holes, and a `seq` is visible
    /// only once every lower one is: so a `seq` missing below the highest
    /// one the read returned will never come (never with our stores), and
    /// the sequence skips it rather than stall. A `seq` missing above it
    /// may simply have been stored after the read (a stale fill): it is
    /// read again, never skipped.
    pub fn filled(&mut self, fill: Fill, found: Vec<T>) -> (Vec<T>, bool) {
        let cut = found.len() >= fill.limit as usize;
        let read_through = found.last().map(Sequenced::seq);
        let mut ready = self.accept(found);
        while let (Some(delivered), Some(&first)) = (self.delivered, self.held.keys().next()) {
            if first == delivered + 1 {
                break;
            }
            let hole_is_final = match read_through {
                Some(through) => first <= through + 1,
                // Nothing after `delivered` at all, although later messages
                // exist: the store lost them. Waiting would not help.
                None => !cut,
            };
            if !hole_is_final {
                break;
            }
            tracing::warn!(
                from = delivered + 1,
                to = first - 1,
                "the store has no messages for these seqs; skipping ahead"
            );
            crate::metrics::get()
                .gap_skipped
                .inc_by(first - 1 - delivered);
            self.delivered = Some(first - 1);
            ready.extend(self.release());
        }
        (ready, cut && self.has_gap())
    }
}

/// Whether a resume's replay is whole: the messages after `since` that
/// `replayed` (its first and last `seq`) holds, up to `delivered`, the
/// last one the room handed out already (the member gets only what comes
/// after it). A replay cut at the replay window starts too late; one read
/// from a store behind the room ends too early: either leaves a hole the
/// client must be told of.
pub fn replay_is_whole(since: u64, replayed: Option<(u64, u64)>, delivered: u64) -> bool {
    if since >= delivered {
        // The client has everything this replica has handed out.
        return true;
    }
    replayed.is_some_and(|(first, last)| first <= since + 1 && last >= delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequencer reads nothing but the seq: a bare one stands for an event.
    impl Sequenced for u64 {
        fn seq(&self) -> u64 {
            *self
        }
    }

    fn many(seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
        seqs.into_iter().collect()
    }

    fn seqs(ready: &[u64]) -> Vec<u64> {
        ready.to_vec()
    }

    #[test]
    fn a_replay_is_whole_only_from_since_to_delivered() {
        assert!(replay_is_whole(10, Some((11, 20)), 20));
        assert!(replay_is_whole(20, None, 20), "nothing missed");
        assert!(
            replay_is_whole(25, None, 20),
            "a client ahead of this replica"
        );
        assert!(
            !replay_is_whole(10, None, 20),
            "nothing replayed of ten missed"
        );
        assert!(
            !replay_is_whole(10, Some((15, 20)), 20),
            "cut at the replay window"
        );
        assert!(
            !replay_is_whole(10, Some((11, 17)), 20),
            "ends before delivery (a store behind the room): 18-20 would be a hole"
        );
    }

    #[test]
    fn delivers_in_order_and_holds_what_comes_early() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(0);
        assert_eq!(seqs(&sequencer.accept(many([1, 2]))), [1, 2]);
        assert!(sequencer.accept(many([4, 5])).is_empty());
        assert!(sequencer.has_gap());
        assert_eq!(seqs(&sequencer.accept(many([3]))), [3, 4, 5]);
        assert!(!sequencer.has_gap());
        assert_eq!(sequencer.delivered(), Some(5));
    }

    #[test]
    fn never_hands_out_a_message_twice() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(0);
        assert_eq!(seqs(&sequencer.accept(many([1, 2, 3]))), [1, 2, 3]);
        assert!(sequencer.accept(many([2, 3])).is_empty());
        assert!(sequencer.accept(many([5])).is_empty());
        assert!(sequencer.accept(many([5])).is_empty());
        assert_eq!(seqs(&sequencer.accept(many([4, 4]))), [4, 5]);
    }

    #[test]
    fn one_fill_covers_every_gap() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(10);
        sequencer.accept(many([12, 15, 19]));
        let fill = sequencer.fill().unwrap();
        assert_eq!(
            fill,
            Fill {
                after: 10,
                limit: 8
            },
            "11 to 18 in one read"
        );
        let (ready, again) = sequencer.filled(fill, many(11..=18));
        assert_eq!(seqs(&ready), (11..=19).collect::<Vec<_>>());
        assert!(!again);
    }

    /// The broker-reconnect bug: a fill planned before the catch-up moved
    /// the sequence on completes after it. Its stale messages are dropped,
    /// and the skip-ahead never moves `delivered` backwards.
    #[test]
    fn a_stale_fill_moves_nothing_backwards() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(522);
        sequencer.accept(many([530]));
        let stale = sequencer.fill().unwrap();
        // Catch-up after the reconnect delivers up to 696 first.
        let caught_up = sequencer.accept(many(523..=696));
        assert_eq!(caught_up.len(), 174);
        // Then the old fill's answer arrives, shorter than asked.
        let (ready, again) = sequencer.filled(stale, many(523..=529));
        assert!(ready.is_empty(), "nothing is handed out twice");
        assert!(!again);
        assert_eq!(sequencer.delivered(), Some(696));
        assert_eq!(seqs(&sequencer.accept(many([697]))), [697]);
    }

    #[test]
    fn a_fill_cut_at_its_limit_asks_for_the_rest_instead_of_skipping() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(0);
        sequencer.accept(many([1200]));
        let fill = sequencer.fill().unwrap();
        assert_eq!(fill.limit, MAX_FILL);
        let (ready, again) = sequencer.filled(fill, many(1..=u64::from(MAX_FILL)));
        assert_eq!(ready.len(), MAX_FILL as usize);
        assert!(again, "more to read");
        let next = sequencer.fill().unwrap();
        assert_eq!(next.after, u64::from(MAX_FILL));
        let (ready, _) = sequencer.filled(next, many(501..=1000));
        assert_eq!(ready.len(), 500);
        let last = sequencer.fill().unwrap();
        let (ready, again) = sequencer.filled(last, many(1001..=1199));
        assert_eq!(seqs(&ready).last(), Some(&1200));
        assert!(!again);
    }

    #[test]
    fn a_hole_the_store_does_not_have_is_skipped_not_waited_for() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(0);
        sequencer.accept(many([1, 7]));
        let fill = sequencer.fill().unwrap();
        // The store has 2 and 5 (and 7), not 3, 4 or 6.
        let (ready, again) = sequencer.filled(fill, many([2, 5, 7]));
        assert_eq!(seqs(&ready), [2, 5, 7]);
        assert!(!again);
        assert_eq!(sequencer.delivered(), Some(7));
    }

    /// A hole right after `delivered` with only held messages behind it:
    /// the read fills its whole limit with them, and must not be repeated
    /// forever.
    #[test]
    fn a_single_missing_seq_does_not_make_the_fill_spin() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(3);
        sequencer.accept(many([5]));
        let fill = sequencer.fill().unwrap();
        assert_eq!(fill.limit, 1);
        let (ready, again) = sequencer.filled(fill, many([5]));
        assert_eq!(seqs(&ready), [5]);
        assert!(!again);
    }

    /// A short answer read before newer messages were stored proves
    /// nothing about them: they are read again, not skipped.
    #[test]
    fn a_stale_short_read_never_skips_what_it_did_not_read() {
        let mut sequencer = Sequencer::<u64>::default();
        sequencer.start_at(100);
        sequencer.accept(many([110]));
        let stale = sequencer.fill().unwrap();
        // Meanwhile 101 to 103 arrive, and 105 is held behind 104.
        sequencer.accept(many([101, 102, 103, 105]));
        assert_eq!(sequencer.delivered(), Some(103));
        // The store had only 101 and 102 when the stale fill read it.
        let (ready, again) = sequencer.filled(stale, many([101, 102]));
        assert!(ready.is_empty());
        assert!(!again, "not at once");
        assert_eq!(sequencer.delivered(), Some(103), "104 may yet come");
        assert!(sequencer.has_gap(), "so it is read again after the wait");
    }

    #[test]
    fn before_any_read_the_first_message_starts_the_sequence() {
        let mut sequencer = Sequencer::<u64>::default();
        assert_eq!(seqs(&sequencer.accept(many([7]))), [7]);
        assert_eq!(sequencer.start_at(3), 7, "a later read does not rewind");
    }
}
