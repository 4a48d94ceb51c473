//! The donor page and users: a page opened with `?for=alice` computes
//! alice's job and nothing of the admin's older one, and shows that it
//! computes for alice; an unlimited page shows the owner of whatever job it
//! computes; a page for a user nobody is is refused by the coordinator,
//! saying so. The oracle is the coordinator's own task counts: alice's job
//! gets tasks done and the admin's none (there is no other worker).

use std::time::{Duration, Instant};

use grid_cli::client::Client;
use grid_kernels::KernelSpec;
use grid_kernels::spec::PrimesParams;
use grid_protocol::api::{JobRequest, JobState, UserLimits, UserRequest};
use grid_tests::browser::{BrowserTest, PAGE_TIMEOUT};

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

fn primes(end: u64, tasks: u32) -> JobRequest {
    JobRequest {
        tasks: Some(tasks),
        ..JobRequest::new(KernelSpec::Primes(PrimesParams { start: 0, end }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_donor_page_for_alice_computes_only_her_jobs_and_says_so() {
    let test = BrowserTest::start().await;
    let admin = test.client();
    let token = admin
        .add_user(&UserRequest {
            name: "alice".into(),
            admin: false,
            weight: None,
            limits: UserLimits::default(),
        })
        .await
        .unwrap()
        .token;
    let alice = Client::new(test.url(), Some(token)).unwrap();
    // The admin's job is older and larger: an unlimited page would start it.
    // Both far too long to finish while the test watches them.
    let admins = admin.submit(&primes(2_000_000_000, 20_000)).await.unwrap();
    // Far too long to finish while the test watches it being computed.
    let alices = alice.submit(&primes(2_000_000_000, 20_000)).await.unwrap();

    let page = test
        .open_donor_page_with("autostart=1&threads=1&for=alice")
        .await;
    assert_eq!(page.text("#only-for-names").await.unwrap(), "alice");
    page.wait_for(
        "document.querySelector('#owner').textContent === 'alice'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("the page says whose job it computes");
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let status = alice.status(alices.id).await.unwrap();
        if status.tasks.done >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's job gets no work: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing of the admin's job went to the page limited to alice.
    let untouched = admin.status(admins.id).await.unwrap();
    assert_eq!(untouched.tasks.done, 0, "{untouched:?}");
    assert_eq!(untouched.state, JobState::Queued, "{untouched:?}");
    alice.cancel(alices.id).await.unwrap();

    // A page for nobody in particular takes the admin's job, and names him.
    let open = test.open_donor_page_with("autostart=1&threads=1").await;
    open.wait_for(
        "document.querySelector('#owner').textContent === 'admin'",
        PAGE_TIMEOUT,
    )
    .await
    .expect("an unlimited page computes the admin's job");
    let unlimited: bool = open
        .eval("document.querySelector('#only-for').hidden")
        .await
        .unwrap();
    assert!(unlimited, "a page without ?for= says it is limited");
    admin.cancel(admins.id).await.unwrap();

    // A user nobody is: the coordinator refuses the page's workers.
    let mut nobody = test
        .open_donor_page_with("autostart=1&threads=1&for=nobody")
        .await;
    nobody.expect_errors("nobody");
    nobody
        .wait_for("document.body.dataset.state === 'refused'", PAGE_TIMEOUT)
        .await
        .expect("the page is refused");
    let said = nobody.text("#status").await.unwrap();
    assert!(said.contains("no user named \"nobody\""), "{said}");
    nobody.close().await.unwrap();
    open.close().await.unwrap();
    test.finish(page).await;
}
