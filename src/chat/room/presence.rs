//! Who is online in a room: the local members' users, and what each other
//! replica last reported, forgotten once a replica stops repeating it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A replica not heard from for this long no longer counts as having the
/// room's users online: the bound on how long a dead replica's users linger.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
pub struct Presence {
    /// Distinct users connected here, sorted.
    local: Vec<String>,
    /// What each other replica reported, and when it last did.
    remote: HashMap<String, (Vec<String>, Instant)>,
    /// Local and remote users, sorted: what `presence` frames report.
    online: Vec<String>,
    changes: Changes,
}

/// What changed since the last announcement.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// The local part: the other replicas should hear it.
    pub local: bool,
    /// The whole list: members should hear it.
    pub online: bool,
}

impl Presence {
    pub fn local(&self) -> &[String] {
        &self.local
    }

    pub fn online(&self) -> &[String] {
        &self.online
    }

    /// The users of the local members, now.
    pub fn set_local<'a>(&mut self, users: impl Iterator<Item = &'a str>) {
        let mut local: Vec<String> = users.map(str::to_owned).collect();
        local.sort_unstable();
        local.dedup();
        if local != self.local {
            self.local = local;
            self.changes.local = true;
            self.recompute();
        }
    }

    /// What `node` reports; an empty list means it has nobody here any more.
    pub fn set_remote(&mut self, node: String, users: Vec<String>, now: Instant) {
        if users.is_empty() {
            self.remote.remove(&node);
        } else {
            self.remote.insert(node, (users, now));
        }
        self.recompute();
    }

    /// Forgets replicas that stopped repeating their presence.
    /// Drops the replicas not heard from within the TTL; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.remote.len();
        self.remote
            .retain(|_, (_, heard)| now.duration_since(*heard) < PRESENCE_TTL);
        let expired = before - self.remote.len();
        if expired > 0 {
            self.recompute();
        }
        expired
    }

    /// Whether an announcement is due.
    pub fn changed(&self) -> bool {
        self.changes != Changes::default()
    }

    /// What to announce, once: coalescing many changes into one frame.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    fn recompute(&mut self) {
        let mut online = self.local.clone();
        for (users, _) in self.remote.values() {
            online.extend(users.iter().cloned());
        }
        online.sort_unstable();
        online.dedup();
        if online != self.online {
            self.online = online;
            self.changes.online = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_local_and_remote_users_once_each() {
        let mut presence = Presence::default();
        presence.set_local(["bob", "alice", "bob"].into_iter());
        presence.set_remote("n2".into(), names(&["carol", "alice"]), Instant::now());
        assert_eq!(presence.local(), names(&["alice", "bob"]));
        assert_eq!(presence.online(), names(&["alice", "bob", "carol"]));
    }

    #[test]
    fn many_changes_make_one_announcement() {
        let mut presence = Presence::default();
        for user in ["a", "b", "c"] {
            presence.set_local([user].into_iter());
        }
        assert_eq!(
            presence.take_changes(),
            Changes {
                local: true,
                online: true
            }
        );
        assert!(!presence.changed(), "taken once");
        presence.set_local(["c"].into_iter());
        assert!(!presence.changed(), "nothing new");
        presence.set_remote("n2".into(), names(&["c"]), Instant::now());
        assert!(!presence.changed(), "c was online already");
    }

    #[test]
    fn a_silent_replica_is_forgotten_after_the_ttl() {
        let mut presence = Presence::default();
        let start = Instant::now();
        presence.set_remote("dead".into(), names(&["zed"]), start);
        presence.set_remote("alive".into(), names(&["amy"]), start);
        presence.take_changes();
        presence.set_remote(
            "alive".into(),
            names(&["amy"]),
            start + PRESENCE_TTL - Duration::from_secs(1),
        );
        presence.expire(start + PRESENCE_TTL - Duration::from_millis(1));
        assert_eq!(presence.online(), names(&["amy", "zed"]), "not yet");
        presence.expire(start + PRESENCE_TTL);
        assert_eq!(presence.online(), names(&["amy"]));
        assert!(presence.take_changes().online);
    }

    #[test]
    fn an_empty_report_removes_a_replica_at_once() {
        let mut presence = Presence::default();
        presence.set_remote("n2".into(), names(&["zed"]), Instant::now());
        presence.set_remote("n2".into(), Vec::new(), Instant::now());
        assert!(presence.online().is_empty());
    }
}
