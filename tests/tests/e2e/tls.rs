//! A coordinator served over TLS: https for the API, wss for workers, with a
//! self-signed certificate the clients are told to trust.

use std::time::Duration;

use grid_cli::client::Client;
use grid_coordinator::{ServerConfig, tls};
use grid_tests::{TOKEN, assert_primes, primes, wait_for_job};
use grid_worker_native::{self as worker, WorkerOptions};
use tokio::sync::{oneshot, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_served_over_tls_computes_and_refuses_untrusting_clients() {
    grid_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = ServerConfig::new(dir.path().join("data"), TOKEN.into());
    config.tls = Some(tls::acceptor(&cert_path, &key_path).unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(grid_coordinator::run(listener, config, async move {
        let _ = stopped.await;
    }));

    let url = format!("https://localhost:{port}");
    let client = Client::with_ca(&url, Some(TOKEN.into()), Some(&cert_path)).unwrap();
    let mut healthy = false;
    for _ in 0..200 {
        if client.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(healthy, "the TLS coordinator never answered");

    // A client that does not trust the certificate is refused by its own TLS.
    let untrusting = Client::new(&url, Some(TOKEN.into())).unwrap();
    let error = untrusting.health().await.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // Plain HTTP to the TLS port gets no answer.
    assert!(
        Client::new(&format!("http://localhost:{port}"), None)
            .unwrap()
            .health()
            .await
            .is_err()
    );

    let (stop_worker, stopping) = watch::channel(false);
    let options = WorkerOptions {
        cache: Default::default(),
        for_users: Vec::new(),
        url: url.clone(),
        threads: 1,
        name: Some("tls".into()),
        ca_cert: Some(cert_path.clone()),
    };
    let worker = tokio::spawn(worker::run(options, stopping));
    let job = client
        .submit(&grid_tests::job(primes(0, 1_000_000), 8))
        .await
        .unwrap()
        .id;
    let status = wait_for_job(&client, job, Duration::from_secs(60)).await;
    assert_primes(&status, 78_498);
    let workers = client.workers().await.unwrap();
    assert_eq!(workers[0].tasks_done, 8);

    let _ = stop_worker.send(true);
    let _ = worker.await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
