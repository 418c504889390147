//! A member of a room: one connection, and the messages it has not been
//! handed yet because it has not spoken.

use actix::Recipient;

use crate::chat::Outgoing;

/// Messages held for a member that has not spoken yet, at most; past it
/// they go out at once.
const MAX_HELD: usize = 256;

pub(super) struct Member {
    pub(super) user: String,
    pub(super) socket: Recipient<Outgoing>,
    /// Messages up to here were in this member's `joined` history, or the
    /// client said it has them (`resume`), so they are not delivered again.
    pub(super) seen_up_to: u64,
    /// `Some` while the connection has not spoken: its messages wait here,
    /// in order, until it resumes (they are then replayed) or speaks; with
    /// the seq of each whose direct recipient this member's user is.
    pub(super) held: Option<Vec<(bytestring::ByteString, Option<u64>)>>,
}

impl Member {
    /// Sends (or holds) a message frame. `ours` is its seq when this
    /// member's user is its direct recipient. Returns the seqs that now
    /// reached that recipient: the frame's own, or held ones let go.
    pub(super) fn send_message(
        &mut self,
        frame: &bytestring::ByteString,
        ours: Option<u64>,
    ) -> Vec<u64> {
        match &mut self.held {
            Some(held) if held.len() < MAX_HELD => {
                held.push((frame.clone(), ours));
                Vec::new()
            }
            Some(_) => {
                let mut reached = self.release();
                self.socket.do_send(Outgoing(frame.clone()));
                reached.extend(ours);
                reached
            }
            None => {
                self.socket.do_send(Outgoing(frame.clone()));
                ours.into_iter().collect()
            }
        }
    }

    /// Lets held messages go; returns the seqs of those for this user.
    pub(super) fn release(&mut self) -> Vec<u64> {
        let mut reached = Vec::new();
        for (frame, ours) in self.held.take().into_iter().flatten() {
            self.socket.do_send(Outgoing(frame));
            reached.extend(ours);
        }
        reached
    }
}
