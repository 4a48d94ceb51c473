//! The `users` table: who may use the grid, with their tokens' keyed
//! hashes (never the tokens) and their limits. Written by the single
//! writer like everything else; read once at start.

use rusqlite::{Connection, Transaction, params};

use super::StoreError;
use crate::users::{User, UserId};

/// A change to the users, applied in a group commit.
#[derive(Debug, Clone)]
pub enum UserWrite {
    /// A new user, or the first admin as set at start (its token is the
    /// one in `DATA/token`, so it is written again each time).
    Upsert(User),
    Remove(UserId),
    Token(UserId, [u8; 32]),
}

pub(super) fn apply(tx: &Transaction, write: &UserWrite) -> Result<(), StoreError> {
    match write {
        UserWrite::Upsert(user) => {
            tx.execute(
                "INSERT INTO users (id, name, admin, weight, limits, created_at, token_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash",
                params![
                    user.id,
                    user.name,
                    user.admin,
                    user.weight,
                    serde_json::to_string(&user.limits).expect("limits are plain data"),
                    user.created_at,
                    &user.token_hash[..],
                ],
            )?;
        }
        UserWrite::Remove(id) => {
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
        }
        UserWrite::Token(id, hash) => {
            tx.execute(
                "UPDATE users SET token_hash = ?2 WHERE id = ?1",
                params![id, &hash[..]],
            )?;
        }
    }
    Ok(())
}

/// Every user, by id.
pub(super) fn load(conn: &Connection) -> Result<Vec<User>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT id, name, admin, weight, limits, created_at, token_hash FROM users ORDER BY id",
    )?;
    let rows = statement.query_map([], |r| {
        let limits: String = r.get(4)?;
        let hash: Vec<u8> = r.get(6)?;
        Ok((
            User {
                id: r.get(0)?,
                name: r.get(1)?,
                admin: r.get(2)?,
                weight: r.get(3)?,
                limits: Default::default(),
                created_at: r.get(5)?,
                token_hash: [0; 32],
            },
            limits,
            hash,
        ))
    })?;
    let mut users = Vec::new();
    for row in rows {
        let (mut user, limits, hash) = row?;
        user.limits = serde_json::from_str(&limits)
            .map_err(|e| StoreError::Corrupt(format!("user {}'s limits: {e}", user.name)))?;
        user.token_hash = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("user {}'s token hash", user.name)))?;
        users.push(user);
    }
    Ok(users)
}
