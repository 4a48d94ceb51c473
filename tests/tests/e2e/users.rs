//! Users on one coordinator, through the `grid` command line as a person
//! would use it: the admin adds alice and bob (`grid user add` prints a
//! token once); each submits a job; each sees only its own (another's is
//! "no job", exit 1), the admin sees both with an OWNER column; alice's
//! limit refuses a second job naming the limit; a rotated token and a
//! removed user's token are refused at once, and the rest carries on; the
//! audit trail (admins only) lists each of those changes and who made it.

use grid_tests::{TestGrid, grid_cli_with};

/// `grid ARGS` off the runtime, with `token`.
async fn grid(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let (url, token) = (url.to_string(), token.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        grid_cli_with(&url, Some(&token), &args)
    })
    .await
    .unwrap()
}

/// The token `grid user add` / `grid token rotate` printed.
fn token_of(out: &(i32, String, String)) -> String {
    assert_eq!(out.0, 0, "{out:?}");
    let token = out.1.trim().to_string();
    assert_eq!(token.len(), 48, "{out:?}");
    assert!(out.2.contains("shown once"), "{out:?}");
    token
}

const PRIMES: [&str; 7] = [
    "submit", "primes", "--start", "0", "--end", "1000", "--json",
];

fn job_id(out: &(i32, String, String)) -> u64 {
    assert_eq!(out.0, 0, "{out:?}");
    let status: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    status["id"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_their_own_jobs_and_tokens_stop_working_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let grid_ = TestGrid::start(&dir.path().join("data")).await;
    let url = grid_.url.as_str();
    let admin = grid_tests::TOKEN;
    let alice = token_of(&grid(url, admin, &["user", "add", "alice", "--max-running", "1"]).await);
    let bob = token_of(&grid(url, admin, &["user", "add", "bob"]).await);
    let (code, listed, _) = grid(url, admin, &["user", "ls"]).await;
    assert_eq!(code, 0);
    assert!(
        listed.contains("alice") && listed.contains("bob"),
        "{listed}"
    );

    let a = job_id(&grid(url, &alice, &PRIMES).await);
    let b = job_id(&grid(url, &bob, &PRIMES).await);
    let over = grid(url, &alice, &PRIMES).await;
    assert_eq!(over.0, 1, "{over:?}");
    assert!(over.2.contains("max_running 1"), "{over:?}");

    // Each sees its own; another's is as if it did not exist.
    let (_, mine, _) = grid(url, &alice, &["jobs"]).await;
    assert!(
        mine.lines()
            .any(|l| l.trim_start().starts_with(&a.to_string())),
        "{mine}"
    );
    assert!(
        !mine
            .lines()
            .any(|l| l.trim_start().starts_with(&b.to_string())),
        "{mine}"
    );
    assert!(!mine.contains("OWNER"), "{mine}");
    let peek = grid(url, &alice, &["status", &b.to_string()]).await;
    assert_eq!(peek.0, 1, "{peek:?}");
    assert!(peek.2.contains(&format!("no job {b}")), "{peek:?}");
    let cancel = grid(url, &alice, &["cancel", &b.to_string()]).await;
    assert_eq!(cancel.0, 1, "{cancel:?}");
    let (_, all, _) = grid(url, admin, &["jobs"]).await;
    assert!(
        all.contains("OWNER") && all.contains("alice") && all.contains("bob"),
        "{all}"
    );

    // Only admins manage users.
    let refused = grid(url, &alice, &["user", "add", "mallory"]).await;
    assert_eq!(refused.0, 1, "{refused:?}");
    assert!(refused.2.contains("not an admin"), "{refused:?}");

    // Rotated: the old token is refused at once, the new one works.
    let rotated = token_of(&grid(url, &alice, &["token", "rotate", "alice"]).await);
    let old = grid(url, &alice, &["jobs"]).await;
    assert_eq!(old.0, 1, "{old:?}");
    assert!(old.2.contains("401"), "{old:?}");
    assert_eq!(grid(url, &rotated, &["status", &a.to_string()]).await.0, 0);

    // Removed: bob's token is refused; his job stays, the admin's to see.
    assert_eq!(grid(url, admin, &["user", "rm", "bob"]).await.0, 0);
    assert_eq!(grid(url, &bob, &["jobs"]).await.0, 1);
    let (code, theirs, _) = grid(url, admin, &["status", &b.to_string(), "--json"]).await;
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(status["owner"], "#3", "a removed owner is shown by number");

    // The audit trail says who did what; only admins read it.
    let (code, trail, _) = grid(url, admin, &["audit", "--since", "1h"]).await;
    assert_eq!(code, 0);
    for line in [
        "admin            user_added         user alice",
        "admin            user_added         user bob",
        &format!("alice            job_submitted      job {a}"),
        &format!("bob              job_submitted      job {b}"),
        "alice            token_rotated      user alice",
        "admin            user_removed       user bob",
    ] {
        assert!(trail.contains(line), "{line:?} in\n{trail}");
    }
    assert!(
        !trail.contains(&alice) && !trail.contains(&rotated),
        "no token in the trail"
    );
    let refused = grid(url, &rotated, &["audit"]).await;
    assert_eq!(refused.0, 1, "{refused:?}");
    assert!(refused.2.contains("not an admin"), "{refused:?}");
    grid_.stop().await;
}
