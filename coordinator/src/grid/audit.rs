//! The audit trail in the grid: each change a user or the grid makes is
//! appended to the store as it succeeds (see `store::audit`), and
//! `GET /api/audit` reads it back for admins.

use grid_protocol::api::{AuditAction, AuditEntry};

use super::*;
use crate::users::Caller;

/// Who the grid itself is, in the trail.
pub const COORDINATOR: &str = "coordinator";

/// The most entries one answer holds.
pub const MAX_AUDIT_ENTRIES: u32 = 10_000;

impl Grid {
    /// Appends an entry: `actor` did `action` to `subject`.
    pub(super) fn audit(&self, actor: &str, action: AuditAction, subject: String, detail: String) {
        self.store.audit(AuditEntry {
            at: unix_ms(),
            actor: actor.to_string(),
            action,
            subject,
            detail,
        });
    }

    /// `GET /api/audit?since=MS&limit=N`: the entries at or after `since`,
    /// oldest first, at most `limit` (default and cap
    /// [`MAX_AUDIT_ENTRIES`]); admins only.
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        since: u64,
        limit: Option<u32>,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        if !caller.admin {
            return Err(ApiError::Forbidden(format!(
                "user {} is not an admin; the audit trail is for admins",
                caller.name
            )));
        }
        // What was appended before the request is read back.
        self.store.flush().await?;
        let limit = limit.unwrap_or(MAX_AUDIT_ENTRIES).min(MAX_AUDIT_ENTRIES);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.audit_since(since, limit))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::from)
    }
}
