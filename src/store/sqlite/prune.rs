//! Retention: deleting what `RETENTION_DAYS` and `RETENTION_MESSAGES` no
//! longer keep, a batch at a time on the writer.

use rusqlite::{params, Connection};

use crate::store::{Millis, Retention};

/// Deletes at most about `batch` messages that `retention` no longer
/// keeps; how many it deleted.
pub(super) fn prune(
    conn: &Connection,
    retention: Retention,
    now: Millis,
    batch: u64,
) -> rusqlite::Result<u64> {
    let mut deleted = 0;
    if let Some(max_age) = retention.max_age {
        deleted += too_old(conn, now.saturating_sub(max_age), batch)?;
    }
    if let Some(keep) = retention.per_room {
        deleted += over_the_cap(conn, keep, batch.saturating_sub(deleted))?;
    }
    Ok(deleted)
}

/// Messages from before `cutoff`. Rows are in arrival order, so the oldest
/// come first: the ones up to the first young enough go, by rowid, with no
/// index on time to keep up at every append.
fn too_old(conn: &Connection, cutoff: Millis, batch: u64) -> rusqlite::Result<u64> {
    let mut oldest =
        conn.prepare_cached("SELECT rowid, ts FROM messages ORDER BY rowid LIMIT ?1")?;
    let mut last = None;
    let mut rows = oldest.query([batch as i64])?;
    while let Some(row) = rows.next()? {
        let (rowid, ts): (i64, Millis) = (row.get(0)?, row.get(1)?);
        if ts >= cutoff {
            break;
        }
        last = Some(rowid);
    }
    let Some(last) = last else {
        return Ok(0);
    };
    let deleted = conn.execute("DELETE FROM messages WHERE rowid <= ?1", [last])?;
    Ok(deleted as u64)
}

/// Each room's messages older than its newest `keep`, by the (room, seq)
/// index; a room's newest seq is its own (rooms.last_seq), not the
/// newest still stored.
fn over_the_cap(conn: &Connection, keep: u64, batch: u64) -> rusqlite::Result<u64> {
    let over: Vec<(String, i64)> = conn
        .prepare_cached("SELECT name, last_seq FROM rooms WHERE last_seq > ?1")?
        .query_map([keep as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete = conn.prepare_cached(
        "DELETE FROM messages WHERE rowid IN
         (SELECT rowid FROM messages WHERE room = ?1 AND seq <= ?2 LIMIT ?3)",
    )?;
    let mut deleted = 0;
    for (room, last_seq) in over {
        if deleted >= batch {
            break;
        }
        let upto = last_seq - keep as i64;
        deleted += delete.execute(params![room, upto, (batch - deleted) as i64])? as u64;
    }
    Ok(deleted)
}
