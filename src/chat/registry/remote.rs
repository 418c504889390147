//! What the other replicas send this one: room traffic routed to the
//! room, users' activity, questions and answers for backends, and the
//! resync after the broker comes back.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;

use super::{ConfirmDeliveries, Registry};
use crate::chat::names::RoomKind;
use crate::chat::{room, Evict};
use crate::cluster::{Control, Remote, Resync, RoomEvent, Traffic};
use crate::store::{now_millis, Receipt};

impl Handler<Remote> for Registry {
    type Result = ();

    fn handle(&mut self, remote: Remote, _ctx: &mut Self::Context) {
        match remote.event {
            Traffic::Room(event) => self.route(remote.node, event),
            Traffic::Control(control) => self.control(&remote.node, control),
        }
    }
}

impl Registry {
    fn control(&mut self, node: &str, control: Control) {
        match control {
            Control::SessionOpened { user, at } => {
                if self.policies.single_session {
                    self.evict_user(&user, Evict::Replaced, Some(at));
                }
            }
            Control::LoginEnded { user, login } => self.end_login(&user, &login),
            Control::Spent { spent } => {
                for (user, count) in spent {
                    self.policies.budgets.debit(&user, count);
                }
            }
            Control::UserActivity { user, connected } => {
                self.push_to_admins(&user, node, connected);
            }
            Control::ConnectionsAsked { user, query } => {
                self.answer_connections(&user, query, node);
            }
            Control::Connections { query, connections } => {
                self.collect_connections(query, &connections);
            }
            Control::UserDisconnected {
                user,
                reason,
                until,
            } => {
                let period =
                    Duration::from_millis(until.saturating_sub(now_millis()).max(0) as u64);
                self.refuse(user, reason, period);
            }
        }
    }

    /// Hands another replica's room traffic to the room here.
    fn route(&mut self, node: String, event: RoomEvent) {
        let room = event.room().to_owned();
        let addr = match self.rooms.get(&room) {
            Some(entry) => entry.addr.clone(),
            None => {
                // A direct conversation reaching a local user starts its room
                // here; presence alone does not.
                let local_participant = RoomKind::direct(&room)
                    .is_some_and(|(a, b)| self.users.contains_key(a) || self.users.contains_key(b));
                if !local_participant || matches!(event, RoomEvent::Presence { .. }) {
                    return;
                }
                self.ensure_room(&room)
            }
        };
        addr.do_send(room::FromCluster { node, event });
    }
}

impl Handler<ConfirmDeliveries> for Registry {
    type Result = ();

    fn handle(
        &mut self,
        ConfirmDeliveries(deliveries): ConfirmDeliveries,
        _ctx: &mut Self::Context,
    ) {
        let mut by_room: HashMap<String, Vec<Receipt>> = HashMap::new();
        for delivery in deliveries {
            by_room
                .entry(delivery.room.clone())
                .or_default()
                .push(delivery);
        }
        for (room, deliveries) in by_room {
            // The recipient is connected here, so its direct room may run here.
            self.ensure_room(&room).do_send(room::Confirmed(deliveries));
        }
    }
}

impl Handler<Resync> for Registry {
    type Result = ();

    fn handle(&mut self, resync: Resync, _ctx: &mut Self::Context) {
        for entry in self.rooms.values() {
            entry.addr.do_send(resync.clone());
        }
    }
}
