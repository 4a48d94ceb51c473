//! Who may use the grid: users, their tokens and their limits, without I/O.
//!
//! A token is 192 random bits, shown once when it is made and never
//! stored: the registry keeps a keyed SHA-256 of it ([`TokenKey::hash`]),
//! finds the user by that hash, and compares the hash found in constant
//! time. A token cannot be guessed, so a keyed hash is enough (no slow
//! password hash); the key lives apart from the store (`DATA/token.key`),
//! so a copy of the store alone cannot be checked against a token.
//!
//! User 1 is the first admin; its token is the one in `DATA/token` (or
//! `grid serve --token`), set again at every start. A removed or rotated
//! token stops working at once: [`Users`] is what every request and
//! monitor channel asks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use grid_protocol::api::{UserInfo, UserLimits};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A user's number; the first admin is [`FIRST_ADMIN`].
pub type UserId = u64;

/// The user who owns `DATA/token`, and every job stored before users.
pub const FIRST_ADMIN: UserId = 1;
/// Its name.
pub const FIRST_ADMIN_NAME: &str = "admin";

/// The secret that keys token hashes.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn new(key: [u8; 32]) -> TokenKey {
        TokenKey(key)
    }

    /// The keyed hash a token is stored as: SHA-256 over the key, the
    /// token's length and the token (surrounding whitespace dropped).
    pub fn hash(&self, token: &str) -> [u8; 32] {
        let token = token.trim().as_bytes();
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update((token.len() as u64).to_le_bytes());
        hash.update(token);
        hash.finalize().into()
    }
}

/// A new random token: 24 bytes as 48 hex digits.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// One user, as the registry and the store keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub admin: bool,
    /// Its share of the workers against other users' (at least 1).
    pub weight: u32,
    pub limits: UserLimits,
    /// Unix milliseconds.
    pub created_at: u64,
    pub token_hash: [u8; 32],
}

impl User {
    pub fn info(&self) -> UserInfo {
        UserInfo {
            name: self.name.clone(),
            admin: self.admin,
            weight: self.weight,
            limits: self.limits,
            created_at: self.created_at,
        }
    }
}

/// Who made a request: what every route checks ownership against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub name: Arc<str>,
    pub admin: bool,
    /// The hash of the token it came with: a channel that outlives the
    /// request (the monitor) checks it is still the user's.
    pub token_hash: [u8; 32],
}

impl Caller {
    /// Whether the caller may see and manage what `owner` owns.
    pub fn may_see(&self, owner: UserId) -> bool {
        self.admin || self.user == owner
    }
}

/// Why a change to the users was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    BadName(String),
    #[error("there is already a user named {0:?}")]
    Exists(String),
    #[error("no user named {0:?}")]
    Unknown(String),
    #[error("the first admin ({FIRST_ADMIN_NAME}) cannot be removed: its token is DATA/token")]
    FirstAdmin,
    #[error("a weight is at least 1")]
    BadWeight,
}

/// The most bytes in a user's name.
pub const MAX_NAME_BYTES: usize = 64;

/// A user name: 1 to 64 of ASCII letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(format!(
            "{name:?} is not a user name: 1 to {MAX_NAME_BYTES} letters, digits, '.', '_' or '-', \
             starting with a letter or digit"
        )))
    }
}

/// Every user, found by name, by id and by token.
#[derive(Debug, Default)]
pub struct Users {
    by_id: BTreeMap<UserId, User>,
    by_hash: HashMap<[u8; 32], UserId>,
}

impl Users {
    /// The registry of `users` as the store holds them.
    pub fn new(users: impl IntoIterator<Item = User>) -> Users {
        let mut registry = Users::default();
        for user in users {
            registry.insert(user);
        }
        registry
    }

    fn insert(&mut self, user: User) {
        self.by_hash.insert(user.token_hash, user.id);
        self.by_id.insert(user.id, user);
    }

    /// The user a token (hashed with the registry's key) belongs to.
    pub fn authenticate(&self, hash: &[u8; 32]) -> Option<Caller> {
        let id = self.by_hash.get(hash)?;
        let user = self.by_id.get(id)?;
        bool::from(user.token_hash.ct_eq(hash)).then(|| Caller {
            user: user.id,
            name: user.name.as_str().into(),
            admin: user.admin,
            token_hash: user.token_hash,
        })
    }

    /// Whether `caller`'s token is still its user's (not removed, not
    /// rotated since).
    pub fn is_current(&self, caller: &Caller) -> bool {
        self.by_id
            .get(&caller.user)
            .is_some_and(|u| bool::from(u.token_hash.ct_eq(&caller.token_hash)))
    }

    pub fn get(&self, id: UserId) -> Option<&User> {
        self.by_id.get(&id)
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.by_id.values().find(|u| u.name == name)
    }

    /// A user's name, or `#id` for one removed since.
    pub fn name_of(&self, id: UserId) -> String {
        self.by_id
            .get(&id)
            .map_or_else(|| format!("#{id}"), |u| u.name.clone())
    }

    /// Every user, by id.
    pub fn all(&self) -> impl Iterator<Item = &User> {
        self.by_id.values()
    }

    /// The id the next user gets.
    pub fn next_id(&self) -> UserId {
        self.by_id
            .keys()
            .next_back()
            .map_or(FIRST_ADMIN, |id| id + 1)
    }

    /// Checks that `user` may be added.
    pub fn check_new(&self, user: &User) -> Result<(), UserError> {
        check_name(&user.name)?;
        if user.weight == 0 {
            return Err(UserError::BadWeight);
        }
        if self.by_name(&user.name).is_some() {
            return Err(UserError::Exists(user.name.clone()));
        }
        Ok(())
    }

    /// Adds a user checked by [`Self::check_new`] (and stored).
    pub fn add(&mut self, user: User) {
        self.insert(user);
    }

    /// Checks that the user named `name` may be removed; its id.
    pub fn check_remove(&self, name: &str) -> Result<UserId, UserError> {
        let user = self
            .by_name(name)
            .ok_or_else(|| UserError::Unknown(name.into()))?;
        if user.id == FIRST_ADMIN {
            return Err(UserError::FirstAdmin);
        }
        Ok(user.id)
    }

    /// Removes a user (and so its token) at once.
    pub fn remove(&mut self, id: UserId) -> Option<User> {
        let user = self.by_id.remove(&id)?;
        self.by_hash.remove(&user.token_hash);
        Some(user)
    }

    /// Gives user `id` a new token hash; the old token stops working.
    pub fn set_token(&mut self, id: UserId, hash: [u8; 32]) -> bool {
        let Some(user) = self.by_id.get_mut(&id) else {
            return false;
        };
        self.by_hash.remove(&user.token_hash);
        user.token_hash = hash;
        self.by_hash.insert(hash, id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: UserId, name: &str, key: &TokenKey, token: &str) -> User {
        User {
            id,
            name: name.into(),
            admin: id == FIRST_ADMIN,
            weight: 1,
            limits: UserLimits::default(),
            created_at: 0,
            token_hash: key.hash(token),
        }
    }

    #[test]
    fn tokens_find_their_user_and_nothing_else_does() {
        let key = TokenKey::new([7; 32]);
        let users = Users::new([
            user(1, "admin", &key, "t-admin"),
            user(2, "alice", &key, "t-alice"),
        ]);
        let alice = users.authenticate(&key.hash(" t-alice\n")).unwrap();
        assert_eq!((alice.user, &*alice.name, alice.admin), (2, "alice", false));
        assert!(users.authenticate(&key.hash("t-admin")).unwrap().admin);
        assert_eq!(users.authenticate(&key.hash("t-bob")), None);
        assert_eq!(users.authenticate(&key.hash("")), None);
        // Another key: the same token is another hash.
        let other = TokenKey::new([8; 32]);
        assert_eq!(users.authenticate(&other.hash("t-alice")), None);
        assert_ne!(key.hash("ab"), key.hash("a"), "lengths are hashed");
    }

    #[test]
    fn removing_or_rotating_stops_the_old_token_at_once() {
        let key = TokenKey::new([1; 32]);
        let mut users = Users::new([user(1, "admin", &key, "a"), user(2, "bob", &key, "b")]);
        assert!(users.set_token(2, key.hash("b2")));
        assert_eq!(users.authenticate(&key.hash("b")), None);
        assert_eq!(users.authenticate(&key.hash("b2")).unwrap().user, 2);
        assert_eq!(users.check_remove("bob"), Ok(2));
        users.remove(2);
        assert_eq!(users.authenticate(&key.hash("b2")), None);
        assert_eq!(users.name_of(2), "#2");
        assert_eq!(users.check_remove("admin"), Err(UserError::FirstAdmin));
        assert_eq!(
            users.check_remove("nobody"),
            Err(UserError::Unknown("nobody".into()))
        );
    }

    #[test]
    fn names_are_checked_and_unique() {
        let key = TokenKey::new([0; 32]);
        let users = Users::new([user(1, "admin", &key, "a")]);
        assert_eq!(users.next_id(), 2);
        for bad in ["", "-x", "a b", "é", &"x".repeat(65), "a/b"] {
            assert!(
                matches!(
                    users.check_new(&user(2, bad, &key, "t")),
                    Err(UserError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            users.check_new(&user(2, "admin", &key, "t")),
            Err(UserError::Exists("admin".into()))
        );
        let mut heavy = user(2, "lab-3.b_x", &key, "t");
        assert_eq!(users.check_new(&heavy), Ok(()));
        heavy.weight = 0;
        assert_eq!(users.check_new(&heavy), Err(UserError::BadWeight));
    }

    #[test]
    fn callers_see_their_own_and_admins_everything() {
        let alice = Caller {
            user: 2,
            name: "alice".into(),
            admin: false,
            token_hash: [0; 32],
        };
        assert!(alice.may_see(2));
        assert!(!alice.may_see(3));
        let admin = Caller {
            admin: true,
            ..alice
        };
        assert!(admin.may_see(3));
    }
}
