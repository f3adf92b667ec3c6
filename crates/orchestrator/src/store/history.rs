//! A finished job's history kept as one record.
//!
//! While a job runs, each history entry is its own row (`(job ID, seq)`), written as it
//! happens. When the job reaches a terminal state its rows are folded into one row, keyed by
//! the last entry's sequence number, holding all of them as a JSON array (format 4, inside the
//! compressed envelope). Entries of one job repeat the job, execution and node IDs and the
//! times: compressed together they cost a fraction of what each costs alone, and the job's
//! history becomes one B-tree entry instead of about nine. A job that runs again (a rerun or
//! an update) appends single rows after the folded one, and is folded again when it ends.

use bacalhau_model::JobHistory;
use redb::{ReadableTable, Table};

use super::{FORMAT_V1, StoreError, codec, db_err, decode};

/// A JSON array of history entries, in order.
const FORMAT_HISTORY_RUN: u8 = 4;

/// A history longer than this (a daemon or service job that ran for months) stays in rows:
/// one record of it would be read whole on every fold and could outgrow what a record may be.
const FOLD_MAX_BYTES: usize = 1 << 20;

type HistoryTable<'tx> = Table<'tx, (&'static str, u64), &'static [u8]>;

/// Appends the entries stored in one history row to `out`.
pub(super) fn decode_row(bytes: &[u8], out: &mut Vec<JobHistory>) -> Result<(), StoreError> {
    let inner = codec::unpack("history entry", bytes)?;
    match inner.split_first() {
        Some((&FORMAT_HISTORY_RUN, rest)) => {
            let entries: Vec<JobHistory> = serde_json::from_slice(rest)
                .map_err(|e| StoreError::Corrupt { what: "history", message: e.to_string() })?;
            out.extend(entries);
        }
        _ => out.push(decode("history entry", &inner)?),
    }
    Ok(())
}

/// Folds the history rows of `job_id` into one. Nothing to do when it is one row already.
pub(super) fn fold(t: &mut HistoryTable<'_>, job_id: &str) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    let mut bytes = 0;
    for item in t.range((job_id, 0u64)..=(job_id, u64::MAX)).map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let row = codec::unpack("history entry", v.value())?.into_owned();
        bytes += row.len();
        if bytes > FOLD_MAX_BYTES {
            return Ok(());
        }
        rows.push((k.value().1, row));
    }
    let Some(&(last, _)) = rows.last() else { return Ok(()) };
    if rows.len() < 2 {
        return Ok(());
    }
    // The entries' JSON texts are joined as they are: no entry is parsed or re-encoded.
    let mut run = vec![FORMAT_HISTORY_RUN, b'['];
    let mut empty = true;
    for (_, row) in &rows {
        let body = match row.split_first() {
            Some((&FORMAT_V1, body)) => body,
            Some((&FORMAT_HISTORY_RUN, body)) => {
                body.strip_prefix(b"[").and_then(|b| b.strip_suffix(b"]")).ok_or_else(|| StoreError::Corrupt {
                    what: "history",
                    message: "a folded run is not an array".into(),
                })?
            }
            _ => return Err(StoreError::Corrupt { what: "history", message: "unknown history row format".into() }),
        };
        if body.is_empty() {
            continue;
        }
        if !empty {
            run.push(b',');
        }
        run.extend_from_slice(body);
        empty = false;
    }
    run.push(b']');
    for (seq, _) in &rows {
        t.remove((job_id, *seq)).map_err(db_err)?;
    }
    t.insert((job_id, last), codec::pack(run)?.as_slice()).map_err(db_err)?;
    Ok(())
}
