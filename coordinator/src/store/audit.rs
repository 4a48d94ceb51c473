//! The `audit` table: who did what, appended as it happens (users added
//! and removed, tokens rotated, jobs submitted, cancelled, paused,
//! resumed and removed, answers revised, donors quarantined with the
//! evidence). Nobody waits for an entry: it is committed with the next
//! group, behind the change it records.

use grid_protocol::api::{AuditAction, AuditEntry};
use rusqlite::{Connection, Transaction, params};

use super::StoreError;

pub(super) fn append(tx: &Transaction, entry: &AuditEntry) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        entry.at,
        entry.actor,
        entry.action.name(),
        entry.subject,
        entry.detail
    ])?;
    Ok(())
}

/// The entries at or after `since` (Unix ms), oldest first, at most `limit`.
pub(super) fn since(
    conn: &Connection,
    since: u64,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT at, actor, action, subject, detail FROM audit
         WHERE at >= ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = statement.query_map(params![since.min(i64::MAX as u64), limit], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (at, actor, action, subject, detail) = row?;
        let action = AuditAction::from_name(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("an audit entry's action {action:?}")))?;
        entries.push(AuditEntry {
            at,
            actor,
            action,
            subject,
            detail,
        });
    }
    Ok(entries)
}
