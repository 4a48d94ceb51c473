//! Users in the grid: who a token belongs to, adding and removing users,
//! rotating tokens (the routes under `/api/users`, admins only), and the
//! owner's name on a job's status. The registry itself is the pure
//! [`crate::users::Users`]; this is where it meets the store: a change is
//! committed first, then made in memory, so an answer never names a user
//! the store lost, and a removed or rotated token fails from the next
//! request on.

use grid_protocol::api::{AuditAction, UserInfo, UserRequest, UserToken};

use super::*;
use crate::store::UserWrite;
use crate::users::{
    Caller, FIRST_ADMIN, FIRST_ADMIN_NAME, TokenKey, User, UserError, UserId, Users,
};

impl From<UserError> for ApiError {
    fn from(error: UserError) -> ApiError {
        match error {
            UserError::Unknown(_) => ApiError::NotFound(error.to_string()),
            UserError::Exists(_) => ApiError::Conflict(error.to_string()),
            UserError::FirstAdmin => ApiError::Conflict(error.to_string()),
            UserError::BadName(_) | UserError::BadWeight => ApiError::BadRequest(error.to_string()),
        }
    }
}

/// The users as stored, with the first admin's token set to `token` (the
/// one in `DATA/token`): the registry a grid starts with, and the write
/// that makes the store agree.
pub(super) fn starting_users(stored: Vec<User>, key: &TokenKey, token: &str) -> (Users, UserWrite) {
    let first = stored
        .iter()
        .find(|u| u.id == FIRST_ADMIN)
        .cloned()
        .unwrap_or_else(|| User {
            id: FIRST_ADMIN,
            name: FIRST_ADMIN_NAME.into(),
            admin: true,
            weight: 1,
            limits: Default::default(),
            created_at: unix_ms(),
            token_hash: [0; 32],
        });
    let first = User {
        token_hash: key.hash(token),
        ..first
    };
    let users = Users::new(
        stored
            .into_iter()
            .filter(|u| u.id != FIRST_ADMIN)
            .chain([first.clone()]),
    );
    (users, UserWrite::Upsert(first))
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "user {} is not an admin; managing users needs an admin's token",
            caller.name
        )))
    }
}

impl Grid {
    pub(super) fn users(&self) -> MutexGuard<'_, Users> {
        crate::sync::lock(&self.users, "users")
    }

    /// The user a presented token belongs to, if any.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let hash = self.token_key.hash(token);
        self.users().authenticate(&hash)
    }

    /// The first admin, as the grid's own tests and tools act.
    pub fn first_admin(&self) -> Caller {
        let users = self.users();
        let user = users
            .get(FIRST_ADMIN)
            .expect("the first admin always exists");
        Caller {
            user: user.id,
            name: user.name.as_str().into(),
            admin: true,
            token_hash: user.token_hash,
        }
    }

    /// Whether `caller`'s token still works (its user was not removed and
    /// its token not rotated since it was checked).
    pub fn is_current(&self, caller: &Caller) -> bool {
        self.users().is_current(caller)
    }

    /// Changes whenever a token stops working: what long-lived channels
    /// watch to close when theirs does.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// A user's name, or `#id` for one removed since.
    pub fn user_name(&self, id: UserId) -> String {
        self.users().name_of(id)
    }

    /// A job's status, with its owner's name.
    pub(super) fn status_of(&self, job: &Job) -> JobStatus {
        job.status(unix_ms(), self.user_name(job.definition.owner))
    }

    /// `POST /api/users`: a new user and its token, shown this once.
    pub async fn add_user(
        &self,
        caller: &Caller,
        request: UserRequest,
    ) -> Result<UserToken, ApiError> {
        admin_only(caller)?;
        let token = crate::users::new_token();
        let mut user = User {
            id: 0,
            name: request.name,
            admin: request.admin,
            weight: request.weight.unwrap_or(1),
            limits: request.limits,
            created_at: unix_ms(),
            token_hash: self.token_key.hash(&token),
        };
        // Checked and numbered under the lock; stored outside it. Two adds
        // of one name at once: the store's UNIQUE refuses the second.
        {
            let users = self.users();
            users.check_new(&user)?;
            user.id = users.next_id();
        }
        self.store
            .change_user(UserWrite::Upsert(user.clone()))
            .await
            .map_err(|e| match e {
                StoreError::Sqlite(_) => ApiError::Conflict(format!(
                    "user {:?} could not be added (another was added at the same moment): {e}",
                    user.name
                )),
                other => other.into(),
            })?;
        let info = user.info();
        tracing::info!(user = %user.name, admin = user.admin, by = %caller.name, "user added");
        self.audit(
            &caller.name,
            AuditAction::UserAdded,
            format!("user {}", user.name),
            format!(
                "admin {}, weight {}, limits {}",
                user.admin,
                user.weight,
                serde_json::to_string(&user.limits).expect("limits are plain data")
            ),
        );
        self.scheduler().set_user_weight(user.id, user.weight);
        self.users().add(user);
        Ok(UserToken { user: info, token })
    }

    /// `GET /api/users`.
    pub fn list_users(&self, caller: &Caller) -> Result<Vec<UserInfo>, ApiError> {
        admin_only(caller)?;
        Ok(self.users().all().map(User::info).collect())
    }

    /// `DELETE /api/users/{name}`: its token stops working at once. Its
    /// jobs and uploads stay (an admin still sees them, owned by `#id`).
    pub async fn remove_user(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        admin_only(caller)?;
        let id = self.users().check_remove(name)?;
        self.store.change_user(UserWrite::Remove(id)).await?;
        self.users().remove(id);
        self.revocations.send_modify(|n| *n += 1);
        tracing::info!(user = %name, by = %caller.name, "user removed");
        self.audit(
            &caller.name,
            AuditAction::UserRemoved,
            format!("user {name}"),
            String::new(),
        );
        Ok(())
    }

    /// `POST /api/users/{name}/token`: a new token for the user, the old
    /// one refused from now on. An admin rotates anyone's; a user its own.
    /// The first admin's new token is written to `DATA/token` too.
    pub async fn rotate_token(&self, caller: &Caller, name: &str) -> Result<UserToken, ApiError> {
        let user = self
            .users()
            .by_name(name)
            .cloned()
            .ok_or_else(|| UserError::Unknown(name.into()))?;
        if !caller.admin && caller.user != user.id {
            admin_only(caller)?;
        }
        let token = crate::users::new_token();
        let hash = self.token_key.hash(&token);
        if user.id == FIRST_ADMIN {
            let path = crate::auth::token_path(&self.config.data_dir);
            crate::auth::write_private(&path, &token)
                .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", path.display())))?;
        }
        self.store
            .change_user(UserWrite::Token(user.id, hash))
            .await?;
        self.users().set_token(user.id, hash);
        self.revocations.send_modify(|n| *n += 1);
        tracing::info!(user = %name, by = %caller.name, "token rotated");
        self.audit(
            &caller.name,
            AuditAction::TokenRotated,
            format!("user {name}"),
            String::new(),
        );
        Ok(UserToken {
            user: user.info(),
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::testing::open_grid;
    use grid_protocol::api::UserLimits;

    fn request(name: &str) -> UserRequest {
        UserRequest {
            name: name.into(),
            admin: false,
            weight: None,
            limits: UserLimits::default(),
        }
    }

    #[tokio::test]
    async fn users_get_tokens_that_work_until_removed_or_rotated_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid
            .authenticate("token")
            .expect("DATA/token is the first admin's");
        assert_eq!((admin.user, admin.admin), (FIRST_ADMIN, true));
        let alice = grid.add_user(&admin, request("alice")).await.unwrap();
        assert_eq!(alice.token.len(), 48);
        let as_alice = grid.authenticate(&alice.token).unwrap();
        assert_eq!((&*as_alice.name, as_alice.admin), ("alice", false));
        // Alice manages no users, but may rotate her own token.
        assert!(matches!(
            grid.add_user(&as_alice, request("mallory")).await,
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            grid.list_users(&as_alice),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            grid.rotate_token(&as_alice, "admin").await,
            Err(ApiError::Forbidden(_))
        ));
        let rotated = grid.rotate_token(&as_alice, "alice").await.unwrap();
        assert_eq!(
            grid.authenticate(&alice.token),
            None,
            "the old token is refused"
        );
        assert_eq!(
            grid.authenticate(&rotated.token).unwrap().user,
            as_alice.user
        );
        assert!(matches!(
            grid.add_user(&admin, request("alice")).await,
            Err(ApiError::Conflict(_))
        ));
        assert!(matches!(
            grid.add_user(&admin, request("no spaces")).await,
            Err(ApiError::BadRequest(_))
        ));
        let bob = grid.add_user(&admin, request("bob")).await.unwrap();
        assert!(matches!(
            grid.remove_user(&admin, "admin").await,
            Err(ApiError::Conflict(_))
        ));
        grid.remove_user(&admin, "bob").await.unwrap();
        assert_eq!(grid.authenticate(&bob.token), None);
        let names: Vec<String> = grid
            .list_users(&admin)
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["admin", "alice"]);
        drop(grid);

        // A restart keeps alice's rotated token and forgets bob.
        let grid = open_grid(dir.path()).await;
        assert_eq!(
            grid.authenticate(&rotated.token).unwrap().user,
            as_alice.user
        );
        assert_eq!(grid.authenticate(&bob.token), None);
        assert!(grid.authenticate("token").unwrap().admin);
        // The store holds hashes, never the tokens.
        let stored = std::fs::read(dir.path().join(crate::store::STORE_FILE)).unwrap();
        let needle = rotated.token.as_bytes();
        assert!(!stored.windows(needle.len()).any(|w| w == needle));
    }

    #[tokio::test]
    async fn weights_reach_the_scheduler_and_priorities_the_jobs_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let heavy = grid
            .add_user(
                &admin,
                UserRequest {
                    weight: Some(3),
                    ..request("heavy")
                },
            )
            .await
            .unwrap();
        let caller = grid.authenticate(&heavy.token).unwrap();
        assert_eq!(grid.scheduler().user_weight(caller.user), 3);
        let job = grid
            .submit(
                &caller,
                grid_protocol::api::JobRequest {
                    priority: Some(-2),
                    ..crate::grid::testing::primes_job(1)
                },
            )
            .await
            .unwrap();
        assert_eq!((job.owner.as_str(), job.priority), ("heavy", -2));
        drop(grid);
        let grid = open_grid(dir.path()).await;
        assert_eq!(grid.scheduler().user_weight(caller.user), 3);
        let again = grid.job_status(&caller, job.id).unwrap();
        assert_eq!((again.owner.as_str(), again.priority), ("heavy", -2));
        assert_eq!(grid.job(job.id).unwrap().plan().priority, -2);
    }

    #[tokio::test]
    async fn a_worker_for_some_users_gets_only_their_jobs_and_each_batch_names_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let alice = crate::grid::testing::add_user(&grid, "alice").await;
        // The admin's job is older: an unlimited worker would take it first.
        let admins = grid
            .submit(&admin, crate::grid::testing::primes_job(2))
            .await
            .unwrap();
        let alices = grid
            .submit(&alice, crate::grid::testing::primes_job(2))
            .await
            .unwrap();
        let hello = |names: &[&str]| Hello {
            for_users: names.iter().map(|n| n.to_string()).collect(),
            ..crate::grid::testing::native_hello(1, None)
        };
        let (outbox, mut queue) = mpsc::channel(64);
        grid.register_worker(hello(&["alice"]), None, outbox)
            .expect("alice is a user");
        grid.dispatch();
        let batch = crate::grid::testing::next_batch(&mut queue).await;
        assert_eq!(batch.job, alices.id);
        assert_eq!(batch.owner.as_deref(), Some("alice"));
        let (outbox, mut queue) = mpsc::channel(64);
        grid.register_worker(hello(&[]), None, outbox).unwrap();
        grid.dispatch();
        let batch = crate::grid::testing::next_batch(&mut queue).await;
        assert_eq!(batch.job, admins.id);
        assert_eq!(batch.owner.as_deref(), Some("admin"));
        // A name nobody has: refused, saying which, and nothing joined.
        let before = grid.worker_count();
        let (outbox, _queue) = mpsc::channel(64);
        let (code, reason) = grid
            .register_worker(hello(&["alice", "nobody"]), None, outbox)
            .unwrap_err();
        assert_eq!(code, grid_protocol::CloseCode::BadHello);
        assert!(reason.contains("\"nobody\""), "{reason}");
        assert_eq!(grid.worker_count(), before);
    }

    #[tokio::test]
    async fn rotating_the_first_admins_token_rewrites_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let rotated = grid.rotate_token(&admin, "admin").await.unwrap();
        assert_eq!(grid.authenticate("token"), None);
        assert!(grid.authenticate(&rotated.token).unwrap().admin);
        let file = std::fs::read_to_string(crate::auth::token_path(dir.path())).unwrap();
        assert_eq!(file.trim(), rotated.token);
    }
}
