//! One behavioural contract for every `Store` backend. Each case is written
//! once, in `cases`, against a `Backend` that can open any number of
//! handles onto the same data (as replicas or restarts would); the macro at
//! the bottom runs every case on SQLite and on MongoDB.
//!
//! Over 400 lines, kept whole: it is one contract, and a case split off
//! from it would stop running on both backends.

mod common;

use std::sync::Arc;

use common::mongo::TestMongo;
use rookery::store::sqlite::SqliteStore;
use rookery::store::{Draft, NewEvent, Store, StoreError};

/// Where a case's data lives; dropping it removes the data (or the server).
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Mongo(TestMongo),
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    fn mongo() -> Self {
        Self::Mongo(TestMongo::new())
    }

    /// A new, migrated handle onto this backend's data.
    async fn open(&self) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = match self {
            Self::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.path().join("rookery.db")).unwrap())
            }
            Self::Mongo(mongo) => Arc::new(common::mongo::store_at(&mongo.url).await),
        };
        store.migrate().await.expect("migrate");
        store
    }
}

fn messages(from: &str, texts: &[&str]) -> Vec<NewEvent> {
    texts
        .iter()
        .map(|text| NewEvent {
            id: rookery::store::new_message_id(),
            from: from.into(),
            draft: Draft::Message((*text).into()),
            to: None,
            confirm: None,
            reference: None,
            retry: false,
        })
        .collect()
}

/// A message from `from` with the client's `reference`, possibly a retry.
fn referenced(from: &str, text: &str, reference: &str, retry: bool) -> NewEvent {
    NewEvent {
        reference: Some(reference.into()),
        retry,
        ..messages(from, &[text]).remove(0)
    }
}

/// A direct message from `from` to `to`, optionally asking for a confirmation.
fn direct(from: &str, to: &str, text: &str, confirm: Option<&str>) -> NewEvent {
    NewEvent {
        id: rookery::store::new_message_id(),
        from: from.into(),
        draft: Draft::Message(text.into()),
        to: Some(to.into()),
        confirm: confirm.map(str::to_owned),
        reference: None,
        retry: false,
    }
}

mod cases {
    use super::*;

    pub async fn a_retry_is_stored_once(backend: Backend) {
        let store = backend.open().await;
        let first = store
            .append("r", vec![referenced("ann", "hello", "7", false)], 1)
            .await
            .unwrap()
            .events;
        store
            .append("r", messages("bob", &["between"]), 2)
            .await
            .unwrap();
        // The same frame again, twice in one batch, beside a new message,
        // and a retry whose original never arrived.
        let batch = vec![
            referenced("ann", "hello", "7", true),
            referenced("ann", "hello", "7", true),
            referenced("ann", "new", "8", false),
            referenced("ann", "lost", "9", true),
        ];
        let stored = store.append("r", batch, 3).await.unwrap().events;
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq()).collect();
        assert_eq!(seqs, [1, 1, 3, 4]);
        assert_eq!(stored[0].id(), first[0].id(), "the original comes back");
        assert_eq!(stored[0].ts(), 1);
        // Not a retry of it: another sender, ref or text, or no retry flag.
        let others = vec![
            referenced("bob", "hello", "7", true),
            referenced("ann", "hello", "6", true),
            referenced("ann", "hello!", "7", true),
            referenced("ann", "hello", "7", false),
        ];
        let stored = store.append("r", others, 4).await.unwrap().events;
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq()).collect();
        assert_eq!(seqs, [5, 6, 7, 8]);
        let texts: Vec<String> = store
            .after("r", 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text().unwrap().to_owned())
            .collect();
        assert_eq!(
            texts,
            ["hello", "between", "new", "lost", "hello", "hello", "hello!", "hello"]
        );
        // The same ref and text twice: a retry is of the newest.
        let again = store
            .append("r", vec![referenced("ann", "hello", "7", true)], 5)
            .await
            .unwrap()
            .events;
        assert_eq!(again[0].seq(), 8);
    }

    pub async fn accounts_have_unique_names(backend: Backend) {
        let store = backend.open().await;
        assert_eq!(store.find_user("alice").await.unwrap(), None);
        store.create_user("alice", "hash-1").await.unwrap();
        assert!(matches!(
            store.create_user("alice", "hash-2").await,
            Err(StoreError::Conflict)
        ));
        let alice = store.find_user("alice").await.unwrap().unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.password_hash.as_str()),
            ("alice", "hash-1"),
            "the second registration must not overwrite the first"
        );
        assert_eq!(alice.avatar, None);
        assert!(!alice.operator, "registered, not made by the operator");
    }

    pub async fn names_that_differ_only_in_case_are_found(backend: Backend) {
        let store = backend.open().await;
        store.create_user("Alice.B-1", "hash").await.unwrap();
        for asked in ["alice.b-1", "ALICE.B-1", "Alice.B-1"] {
            assert_eq!(
                store
                    .find_name_ignoring_case(asked)
                    .await
                    .unwrap()
                    .as_deref(),
                Some("Alice.B-1"),
                "{asked}"
            );
        }
        for other in ["alicexb-1", "alice.b", "lice.b-1", "alice.b-12"] {
            assert_eq!(
                store.find_name_ignoring_case(other).await.unwrap(),
                None,
                "{other}"
            );
        }
    }

    pub async fn an_operator_account_is_made_or_taken_over(backend: Backend) {
        let store = backend.open().await;
        store.put_operator_account("ops", "hash-1").await.unwrap();
        let ops = store.find_user("ops").await.unwrap().unwrap();
        assert!(ops.operator);
        assert_eq!(ops.password_hash, "hash-1");
        // Registered by someone else first: the operator takes it over.
        store.create_user("root", "squatter").await.unwrap();
        store.put_operator_account("root", "hash-2").await.unwrap();
        let root = store.find_user("root").await.unwrap().unwrap();
        assert_eq!(
            (root.operator, root.password_hash.as_str()),
            (true, "hash-2")
        );
        assert!(matches!(
            store.create_user("ops", "again").await,
            Err(StoreError::Conflict)
        ));
    }

    pub async fn avatar_changes_return_the_previous_photo(backend: Backend) {
        let store = backend.open().await;
        store.create_user("alice", "hash").await.unwrap();
        assert_eq!(
            store
                .set_avatar("alice", Some("/avatars/a.png"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .set_avatar("alice", Some("/avatars/b.png"))
                .await
                .unwrap(),
            Some("/avatars/a.png".into())
        );
        let alice = store.find_user("alice").await.unwrap().unwrap();
        assert_eq!(alice.avatar.as_deref(), Some("/avatars/b.png"));
    }

    pub async fn appends_get_consecutive_seqs_per_room(backend: Backend) {
        let store = backend.open().await;
        let first = store
            .append("general", messages("alice", &["a", "b"]), 1_000)
            .await
            .unwrap()
            .events;
        let other = store
            .append("random", messages("bob", &["x"]), 1_001)
            .await
            .unwrap()
            .events;
        let second = store
            .append("general", messages("bob", &["c"]), 1_002)
            .await
            .unwrap()
            .events;
        let seqs =
            |batch: &[rookery::event::Event]| batch.iter().map(|m| m.seq()).collect::<Vec<_>>();
        assert_eq!(seqs(&first), [1, 2]);
        assert_eq!(seqs(&other), [1], "every room counts from 1");
        assert_eq!(seqs(&second), [3]);
        assert_eq!(first[1].text().unwrap(), "b");
        assert_eq!(first[1].ts(), 1_000);
        assert!(store
            .append("general", Vec::new(), 1_003)
            .await
            .unwrap()
            .events
            .is_empty());
    }

    pub async fn history_pages_backwards_oldest_first(backend: Backend) {
        let store = backend.open().await;
        store.create_user("alice", "hash").await.unwrap();
        store
            .set_avatar("alice", Some("/avatars/old.png"))
            .await
            .unwrap();
        let texts: Vec<String> = (1..=7).map(|n| format!("m{n}")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        store
            .append("general", messages("alice", &texts), 5_000)
            .await
            .unwrap();
        store
            .append("general", messages("bob", &["from bob"]), 6_000)
            .await
            .unwrap();
        store
            .set_avatar("alice", Some("/avatars/new.png"))
            .await
            .unwrap();

        let newest = store.history("general", None, 3).await.unwrap();
        let summary = |page: &[rookery::event::Event]| {
            page.iter()
                .map(|m| (m.seq(), m.text().unwrap().to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(&newest),
            [(6, "m6".into()), (7, "m7".into()), (8, "from bob".into())]
        );
        assert_eq!(
            newest[1].avatar(),
            Some("/avatars/new.png"),
            "the author's current photo"
        );
        assert_eq!(newest[2].avatar(), None, "bob has no account, so no photo");
        assert_eq!(newest[2].ts(), 6_000);
        let older = store.history("general", Some(6), 3).await.unwrap();
        assert_eq!(
            summary(&older),
            [(3, "m3".into()), (4, "m4".into()), (5, "m5".into())]
        );
        let oldest = store.history("general", Some(3), 3).await.unwrap();
        assert_eq!(summary(&oldest), [(1, "m1".into()), (2, "m2".into())]);
        assert!(store
            .history("general", Some(1), 3)
            .await
            .unwrap()
            .is_empty());
        assert!(store.history("nowhere", None, 3).await.unwrap().is_empty());
    }

    /// What a room missed comes back in one read, oldest first, from the
    /// `seq` it names, capped at the limit.
    pub async fn after_reads_forward_from_a_seq(backend: Backend) {
        let store = backend.open().await;
        let texts: Vec<String> = (1..=9).map(|n| format!("m{n}")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        store
            .append("general", messages("alice", &texts), 5_000)
            .await
            .unwrap();
        store
            .append("other", messages("bob", &["elsewhere"]), 5_000)
            .await
            .unwrap();
        let seqs =
            |page: Vec<rookery::event::Event>| page.iter().map(|m| m.seq()).collect::<Vec<_>>();
        assert_eq!(
            seqs(store.after("general", 6, 10).await.unwrap()),
            [7, 8, 9]
        );
        assert_eq!(seqs(store.after("general", 2, 3).await.unwrap()), [3, 4, 5]);
        assert_eq!(
            store.after("general", 0, 1).await.unwrap()[0]
                .text()
                .unwrap(),
            "m1",
            "from the start"
        );
        assert!(store.after("general", 9, 10).await.unwrap().is_empty());
        assert!(store.after("nowhere", 0, 10).await.unwrap().is_empty());
    }

    /// Two handles appending to one room at once, as two replicas would:
    /// every message stored exactly once, seqs 1..=N without gaps, and each
    /// writer's messages in the order it sent them.
    pub async fn concurrent_writers_never_collide_or_leave_gaps(backend: Backend) {
        let (one, two) = (backend.open().await, backend.open().await);
        let write = |store: Arc<dyn Store>, who: &'static str| async move {
            let mut seqs = Vec::new();
            for batch in 0..10 {
                let texts: Vec<String> =
                    (0..3).map(|n| format!("{who}-{}", batch * 3 + n)).collect();
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                let stored = store
                    .append("busy", messages(who, &texts), 1)
                    .await
                    .unwrap()
                    .events;
                seqs.extend(stored.iter().map(|m| m.seq()));
            }
            seqs
        };
        let (seqs_one, seqs_two) = tokio::join!(write(one.clone(), "one"), write(two, "two"));
        let mut all: Vec<u64> = seqs_one.iter().chain(&seqs_two).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=60).collect::<Vec<u64>>());

        let stored = one.history("busy", None, 100).await.unwrap();
        assert_eq!(
            stored.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            (1..=60).collect::<Vec<u64>>()
        );
        for who in ["one", "two"] {
            let order: Vec<String> = stored
                .iter()
                .filter(|m| m.from() == who)
                .map(|m| m.text().unwrap().to_owned())
                .collect();
            let sent: Vec<String> = (0..30).map(|n| format!("{who}-{n}")).collect();
            assert_eq!(order, sent, "{who}'s messages keep their order");
        }
    }

    pub async fn recent_rooms_lists_public_rooms_newest_first(backend: Backend) {
        let store = backend.open().await;
        store
            .append("old", messages("a", &["x"]), 1_000)
            .await
            .unwrap();
        store
            .append("@alice:bob", messages("alice", &["psst"]), 2_000)
            .await
            .unwrap();
        store
            .append("newer", messages("a", &["x"]), 3_000)
            .await
            .unwrap();
        store
            .append("old", messages("a", &["y"]), 4_000)
            .await
            .unwrap();
        assert_eq!(store.recent_rooms(10).await.unwrap(), ["old", "newer"]);
        assert_eq!(store.recent_rooms(1).await.unwrap(), ["old"]);
    }

    pub async fn sessions_expire_and_are_never_resurrected(backend: Backend) {
        let store = backend.open().await;
        let now = rookery::store::now_millis();
        store
            .session_insert("live", "{\"user\":\"alice\"}", now + 60_000)
            .await
            .unwrap();
        store.session_insert("stale", "{}", now - 1).await.unwrap();
        assert_eq!(
            store.session_load("live", now).await.unwrap().as_deref(),
            Some("{\"user\":\"alice\"}")
        );
        assert_eq!(store.session_load("stale", now).await.unwrap(), None);
        assert_eq!(store.session_load("unknown", now).await.unwrap(), None);

        assert!(store
            .session_update("live", "{\"n\":1}", now + 60_000, now)
            .await
            .unwrap());
        assert_eq!(
            store.session_load("live", now).await.unwrap().as_deref(),
            Some("{\"n\":1}")
        );
        assert!(
            !store
                .session_update("stale", "{\"n\":2}", now + 60_000, now)
                .await
                .unwrap(),
            "an expired session is not updated back to life"
        );
        assert_eq!(store.session_load("stale", now).await.unwrap(), None);

        store
            .session_touch("stale", now + 120_000, now)
            .await
            .unwrap();
        assert_eq!(
            store.session_load("stale", now).await.unwrap(),
            None,
            "an expired session is not touched back to life"
        );
        store
            .session_touch("live", now + 120_000, now)
            .await
            .unwrap();
        assert!(
            store
                .session_load("live", now + 90_000)
                .await
                .unwrap()
                .is_some(),
            "touch extends"
        );
        store.session_delete("live").await.unwrap();
        assert_eq!(store.session_load("live", now).await.unwrap(), None);
    }

    /// Replicas and restarts share one secret: whoever stores it first wins.
    pub async fn the_first_secret_wins_across_handles(backend: Backend) {
        let (one, two) = (backend.open().await, backend.open().await);
        assert_eq!(
            one.secret("cookie", vec![1; 64]).await.unwrap(),
            vec![1; 64]
        );
        assert_eq!(
            two.secret("cookie", vec![2; 64]).await.unwrap(),
            vec![1; 64]
        );
        assert_eq!(two.secret("other", vec![3; 8]).await.unwrap(), vec![3; 8]);
    }

    /// What one handle wrote, a later one (a restart) reads and continues.
    pub async fn data_survives_a_reopen(backend: Backend) {
        let now = rookery::store::now_millis();
        {
            let store = backend.open().await;
            store.create_user("alice", "hash").await.unwrap();
            store
                .append("general", messages("alice", &["before"]), 1)
                .await
                .unwrap();
            store
                .session_insert("key", "{}", now + 60_000)
                .await
                .unwrap();
        }
        let store = backend.open().await;
        store.migrate().await.expect("migrating twice is harmless");
        assert!(store.find_user("alice").await.unwrap().is_some());
        assert!(store.session_load("key", now).await.unwrap().is_some());
        let stored = store
            .append("general", messages("alice", &["after"]), 2)
            .await
            .unwrap()
            .events;
        assert_eq!(stored[0].seq(), 2, "the sequence continues where it was");
        store.ping().await.unwrap();
    }

    pub async fn message_ids_come_back_with_history(backend: Backend) {
        let store = backend.open().await;
        let batch = messages("alice", &["a", "b"]);
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        store.append("general", batch, 1).await.unwrap();
        let history = store.history("general", None, 10).await.unwrap();
        let read: Vec<String> = history.iter().map(|m| m.id().to_owned()).collect();
        assert_eq!(read, ids);
        assert_ne!(ids[0], ids[1]);
    }

    /// An edit or a delete of `target` by `from`.
    fn change(from: &str, draft: Draft) -> NewEvent {
        NewEvent {
            draft,
            ..messages(from, &["unused"]).remove(0)
        }
    }

    /// Every text the room's stream holds, as the store hands it out.
    async fn texts(store: &dyn Store, room: &str) -> Vec<String> {
        let events = store.after(room, 0, 100).await.unwrap();
        events
            .iter()
            .filter_map(|event| event.text().map(str::to_owned))
            .filter(|text| !text.is_empty())
            .collect()
    }

    pub async fn edits_and_deletes_are_events_and_change_their_message(backend: Backend) {
        let store = backend.open().await;
        let batch = messages("alice", &["helo", "other"]);
        let id = batch[0].id.clone();
        store.append("general", batch, 1).await.unwrap();
        let edit = Draft::Edit {
            target: id.clone(),
            text: "hello".into(),
        };
        let stored = store
            .append("general", vec![change("alice", edit)], 2)
            .await
            .unwrap()
            .events;
        assert_eq!(stored[0].seq(), 3, "an edit takes the room's next seq");
        assert_eq!(stored[0].target(), Some(id.as_str()));

        let message = store
            .message("general", &id)
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(message.text(), Some("hello"), "read back as edited");
        let page = store.messages("general", None, 10).await.unwrap();
        assert_eq!(
            page.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            [1, 2],
            "a page of messages holds no changes"
        );
        assert_eq!(page[0].text(), Some("hello"));
        let stream = store.after("general", 0, 10).await.unwrap();
        assert_eq!(stream.len(), 3, "the stream keeps the edit for replays");
        assert_eq!(stream[2].text(), Some("hello"));

        let delete = Draft::Delete { target: id.clone() };
        let stored = store
            .append("general", vec![change("alice", delete)], 3)
            .await
            .unwrap()
            .events;
        assert_eq!(stored[0].seq(), 4);
        let message = store.message("general", &id).await.unwrap().expect("kept");
        assert_eq!(message.text(), None, "deleted");
        // An edit that comes after the delete (from another replica, say)
        // is stored for the seq, and brings no text back.
        let late = Draft::Edit {
            target: id.clone(),
            text: "zombie".into(),
        };
        let stored = store
            .append("general", vec![change("alice", late)], 4)
            .await
            .unwrap()
            .events;
        assert_eq!(
            stored[0].text(),
            Some(""),
            "what goes out for the late edit (ack, live, other replicas) has no text either"
        );
        assert_eq!(
            store.message("general", &id).await.unwrap().unwrap().text(),
            None
        );
        assert_eq!(
            texts(&*store, "general").await,
            ["other"],
            "neither the text, nor its edit's, nor a late edit's is kept"
        );
        assert_eq!(store.after("general", 0, 10).await.unwrap().len(), 5);
    }

    pub async fn a_message_is_found_by_id_in_its_own_room_only(backend: Backend) {
        let store = backend.open().await;
        let batch = messages("alice", &["hi"]);
        let id = batch[0].id.clone();
        store.append("general", batch, 1).await.unwrap();
        let found = store.message("general", &id).await.unwrap().expect("found");
        assert_eq!((found.seq(), found.from()), (1, "alice"));
        assert!(store.message("random", &id).await.unwrap().is_none());
        assert!(store.message("general", "nope").await.unwrap().is_none());
        // A change is no message to change.
        let edit = change(
            "alice",
            Draft::Edit {
                target: id.clone(),
                text: "hey".into(),
            },
        );
        let edit_id = edit.id.clone();
        store.append("general", vec![edit], 2).await.unwrap();
        assert!(store.message("general", &edit_id).await.unwrap().is_none());
    }

    pub async fn a_retry_finds_its_original_after_it_changed(backend: Backend) {
        let store = backend.open().await;
        let sent = referenced("alice", "secret", "s1", false);
        let id = sent.id.clone();
        let first = store.append("general", vec![sent], 1).await.unwrap().events;
        let edit = NewEvent {
            reference: Some("e1".into()),
            ..change(
                "alice",
                Draft::Edit {
                    target: id.clone(),
                    text: "public".into(),
                },
            )
        };
        let edited = store
            .append("general", vec![edit.clone()], 2)
            .await
            .unwrap()
            .events;
        let delete = NewEvent {
            reference: Some("d1".into()),
            ..change("alice", Draft::Delete { target: id.clone() })
        };
        let deleted = store
            .append("general", vec![delete.clone()], 3)
            .await
            .unwrap()
            .events;
        // The answers were lost; each is sent again as a retry.
        let again = |original: NewEvent| NewEvent {
            id: rookery::store::new_message_id(),
            retry: true,
            ..original
        };
        let retries = vec![
            again(referenced("alice", "secret", "s1", false)),
            again(edit),
            again(delete),
        ];
        let acked = store.append("general", retries, 4).await.unwrap().events;
        let seqs: Vec<u64> = acked.iter().map(|event| event.seq()).collect();
        assert_eq!(
            seqs,
            [first[0].seq(), edited[0].seq(), deleted[0].seq()],
            "each retry is acked as its original, though the message changed since"
        );
        assert_eq!(acked[0].text(), None, "the original as it is now: deleted");
        assert_eq!(
            texts(&*store, "general").await,
            Vec::<String>::new(),
            "nothing stored again"
        );
        assert_eq!(store.after("general", 0, 10).await.unwrap().len(), 3);
    }

    pub async fn the_later_of_two_edits_wins(backend: Backend) {
        let store = backend.open().await;
        let batch = messages("alice", &["v0"]);
        let id = batch[0].id.clone();
        store.append("general", batch, 1).await.unwrap();
        let edits = ["v1", "v2"]
            .iter()
            .map(|text| {
                change(
                    "alice",
                    Draft::Edit {
                        target: id.clone(),
                        text: (*text).into(),
                    },
                )
            })
            .collect();
        store.append("general", edits, 2).await.unwrap();
        let message = store.message("general", &id).await.unwrap().unwrap();
        assert_eq!(message.text(), Some("v2"));
    }

    pub async fn an_offline_inbox_keeps_at_most_its_cap(backend: Backend) {
        let store = backend.open().await;
        let room = "@bob:mallory";
        let cap = rookery::store::MAX_INBOX;
        let share = rookery::store::MAX_INBOX_PER_SENDER;
        // One sender fills their share of bob's inbox and no more.
        for start in (0..share + 5).step_by(1000) {
            let batch = (start..(start + 1000).min(share + 5))
                .map(|n| direct("mallory", "bob", &format!("spam {n}"), None))
                .collect();
            store.append(room, batch, 10).await.unwrap();
        }
        assert_eq!(store.pending_count("bob").await.unwrap(), share);
        // Everyone else still reaches him.
        store
            .append("@alice:bob", vec![direct("alice", "bob", "real", None)], 11)
            .await
            .unwrap();
        assert_eq!(store.pending_count("bob").await.unwrap(), share + 1);
        // Many senders together fill the whole inbox, and no more.
        let senders = (cap / share) as usize;
        for sender in (1..senders).map(|n| format!("s{n}")) {
            let batch = (0..share)
                .map(|n| direct(&sender, "bob", &format!("hi {n}"), None))
                .collect();
            store
                .append(&format!("@bob:{sender}"), batch, 12)
                .await
                .unwrap();
        }
        assert_eq!(store.pending_count("bob").await.unwrap(), cap);
        // The other way round, in the same batch, is another inbox.
        let both = vec![
            direct("mallory", "bob", "one more", None),
            direct("bob", "mallory", "stop it", None),
        ];
        store.append(room, both, 13).await.unwrap();
        assert_eq!(store.pending_count("bob").await.unwrap(), cap);
        assert_eq!(store.pending_count("mallory").await.unwrap(), 1);
        // Every one is stored all the same: the conversation has them.
        let newest = store.history(room, None, 3).await.unwrap();
        assert_eq!(newest[2].seq(), share + 7);
        assert_eq!(newest[0].text().unwrap(), format!("spam {}", share + 4));
    }

    /// Retention deletes what is too old and what is past each room's cap,
    /// and a room's seq goes on from where it was, even once every one of
    /// its messages was pruned.
    pub async fn retention_prunes_and_seq_goes_on(backend: Backend) {
        use rookery::store::Retention;
        let store = backend.open().await;
        let day = 24 * 60 * 60 * 1000;
        let now = 100 * day;
        store
            .append("old", messages("alice", &["a", "b", "c"]), now - 10 * day)
            .await
            .unwrap();
        store
            .append(
                "@alice:bob",
                vec![direct("alice", "bob", "long ago", None)],
                now - 10 * day,
            )
            .await
            .unwrap();
        store
            .append(
                "busy",
                messages("alice", &["1", "2", "3", "4", "5", "6"]),
                now - day,
            )
            .await
            .unwrap();
        assert_eq!(store.pending_count("bob").await.unwrap(), 1);
        let week = Retention {
            max_age: Some(7 * day),
            per_room: None,
        };
        assert_eq!(store.prune(week, now).await.unwrap(), 4);
        assert!(store.history("old", None, 10).await.unwrap().is_empty());
        assert_eq!(
            store.pending_count("bob").await.unwrap(),
            0,
            "pruned mail waits no more"
        );
        assert_eq!(store.history("busy", None, 10).await.unwrap().len(), 6);
        assert_eq!(
            store.prune(week, now).await.unwrap(),
            0,
            "nothing more to do"
        );
        // A handle that has not seen the room (another replica's) too.
        let fresh = backend.open().await;
        let appended = fresh
            .append("old", messages("alice", &["again"]), now)
            .await
            .unwrap();
        assert_eq!(
            appended.events[0].seq(),
            4,
            "seqs are never handed out twice"
        );

        let capped = Retention {
            max_age: None,
            per_room: Some(4),
        };
        assert_eq!(store.prune(capped, now).await.unwrap(), 2);
        let kept: Vec<u64> = store
            .history("busy", None, 10)
            .await
            .unwrap()
            .iter()
            .map(|m| m.seq())
            .collect();
        assert_eq!(kept, [3, 4, 5, 6]);
        assert_eq!(store.history("old", None, 10).await.unwrap().len(), 1);
        let appended = store
            .append("busy", messages("alice", &["7"]), now)
            .await
            .unwrap();
        assert_eq!(appended.events[0].seq(), 7);
    }

    pub async fn undelivered_direct_messages_are_fetched_once(backend: Backend) {
        let store = backend.open().await;
        let other = backend.open().await;
        let room = "@alice:bob";
        store
            .append(room, vec![direct("alice", "bob", "1", Some("\"r1\""))], 10)
            .await
            .unwrap();
        store
            .append(room, vec![direct("alice", "bob", "2", None)], 11)
            .await
            .unwrap();
        store
            .append(
                "@bob:carol",
                vec![direct("carol", "bob", "3", Some("7"))],
                12,
            )
            .await
            .unwrap();
        // Room messages and notes to oneself are nobody's pending mail.
        store
            .append("general", messages("alice", &["public"]), 13)
            .await
            .unwrap();
        assert_eq!(store.pending_count("bob").await.unwrap(), 3);
        assert_eq!(store.pending_count("alice").await.unwrap(), 0);

        // Live delivery of seq 2 takes it out of the pending set; it asked
        // for no confirmation, so none comes back.
        assert_eq!(
            store.mark_delivered("bob", room, vec![2]).await.unwrap(),
            []
        );
        assert_eq!(
            other.mark_delivered("bob", room, vec![2]).await.unwrap(),
            [],
            "marking twice changes nothing"
        );
        assert_eq!(store.pending_count("bob").await.unwrap(), 2);

        let first = store.fetch_missed("bob", 1).await.unwrap();
        let texts = |m: &rookery::store::Missed| {
            m.messages
                .iter()
                .map(|m| m.text().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&first), ["1"], "oldest first");
        assert_eq!(first.left, 1);
        assert_eq!(first.deliveries.len(), 1);
        let delivery = &first.deliveries[0];
        assert_eq!(
            (
                delivery.room.as_str(),
                delivery.seq,
                delivery.from.as_str(),
                delivery.to.as_str(),
                delivery.confirm.as_str()
            ),
            (room, 1, "alice", "bob", "\"r1\"")
        );
        // A second handle (another replica) continues where the first left.
        let second = other.fetch_missed("bob", 10).await.unwrap();
        assert_eq!(texts(&second), ["3"]);
        assert_eq!(second.messages[0].room(), "@bob:carol");
        assert_eq!(second.left, 0);
        assert_eq!(
            store.fetch_missed("bob", 10).await.unwrap(),
            rookery::store::Missed::default(),
            "nothing is handed out twice"
        );
        // Fetched messages are delivered: a late live mark confirms nothing.
        assert_eq!(
            store.mark_delivered("bob", room, vec![1]).await.unwrap(),
            []
        );
    }

    pub async fn live_delivery_confirms_once(backend: Backend) {
        let store = backend.open().await;
        let other = backend.open().await;
        let room = "@alice:bob";
        store
            .append(room, vec![direct("alice", "bob", "hi", Some("42"))], 10)
            .await
            .unwrap();
        store
            .append("general", messages("alice", &["public"]), 11)
            .await
            .unwrap();
        let delivered = |store: Arc<dyn Store>, room: &'static str| async move {
            store.history(room, None, 10).await.unwrap()[0].delivered()
        };
        // Only the recipient's delivery counts.
        assert_eq!(
            store.mark_delivered("alice", room, vec![1]).await.unwrap(),
            []
        );
        assert!(!delivered(store.clone(), room).await, "not delivered yet");
        let (a, b) = tokio::join!(
            store.mark_delivered("bob", room, vec![1]),
            other.mark_delivered("bob", room, vec![1]),
        );
        let confirmations = a.unwrap().len() + b.unwrap().len();
        assert_eq!(
            confirmations, 1,
            "two replicas marking at once confirm once"
        );
        assert_eq!(store.pending_count("bob").await.unwrap(), 0);
        assert!(
            delivered(other.clone(), room).await,
            "history says it reached bob"
        );
        assert!(
            !delivered(store.clone(), "general").await,
            "a room message has no recipient"
        );
    }

    pub async fn concurrent_fetches_split_the_pending_messages(backend: Backend) {
        let store = backend.open().await;
        let other = backend.open().await;
        for n in 0..20 {
            store
                .append(
                    "@alice:bob",
                    vec![direct("alice", "bob", &n.to_string(), None)],
                    n,
                )
                .await
                .unwrap();
        }
        // Two connections page through at once, as a client does: until
        // nothing is left. A page may come back short when the other one
        // claimed some of it first.
        let drain = |store: Arc<dyn Store>| async move {
            let mut seqs = Vec::new();
            loop {
                let page = store.fetch_missed("bob", 6).await.unwrap();
                seqs.extend(page.messages.iter().map(|m| m.seq()));
                if page.left == 0 {
                    return seqs;
                }
            }
        };
        let (a, b) = tokio::join!(drain(store.clone()), drain(other.clone()));
        let mut seqs: Vec<u64> = a.into_iter().chain(b).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=20).collect::<Vec<_>>(),
            "each message exactly once"
        );
    }

    pub async fn read_positions_only_move_forward(backend: Backend) {
        let store = backend.open().await;
        store.set_read("general", "alice", 5).await.unwrap();
        store.set_read("general", "bob", 7).await.unwrap();
        store.set_read("general", "alice", 3).await.unwrap();
        store.set_read("random", "carol", 1).await.unwrap();
        assert_eq!(
            store.read_positions("general", 10).await.unwrap(),
            [("bob".to_owned(), 7), ("alice".to_owned(), 5)]
        );
        assert_eq!(
            store.read_positions("general", 1).await.unwrap(),
            [("bob".to_owned(), 7)]
        );
    }
}

/// Runs every listed case once per backend, as `sqlite::case` and `mongo::case`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $case() {
                    super::cases::$case(super::Backend::sqlite()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[actix_web::test]
                async fn $case() {
                    super::cases::$case(super::Backend::mongo()).await;
                }
            )*
        }
    };
}

conformance!(
    a_retry_is_stored_once,
    accounts_have_unique_names,
    names_that_differ_only_in_case_are_found,
    an_operator_account_is_made_or_taken_over,
    avatar_changes_return_the_previous_photo,
    appends_get_consecutive_seqs_per_room,
    history_pages_backwards_oldest_first,
    after_reads_forward_from_a_seq,
    concurrent_writers_never_collide_or_leave_gaps,
    recent_rooms_lists_public_rooms_newest_first,
    sessions_expire_and_are_never_resurrected,
    the_first_secret_wins_across_handles,
    data_survives_a_reopen,
    message_ids_come_back_with_history,
    edits_and_deletes_are_events_and_change_their_message,
    a_message_is_found_by_id_in_its_own_room_only,
    a_retry_finds_its_original_after_it_changed,
    the_later_of_two_edits_wins,
    undelivered_direct_messages_are_fetched_once,
    an_offline_inbox_keeps_at_most_its_cap,
    retention_prunes_and_seq_goes_on,
    live_delivery_confirms_once,
    concurrent_fetches_split_the_pending_messages,
    read_positions_only_move_forward,
);
