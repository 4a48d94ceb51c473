//! A coordinator that cannot keep its store says so and stops, rather than
//! running without durability or corrupting what is there.

use grid_tests::{TOKEN, free_port, grid_binary};

fn serve(data: &str) -> (i32, String) {
    let port = free_port().unwrap();
    let output = std::process::Command::new(grid_binary())
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--data",
            data,
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unwritable_data_directory_is_a_clear_error() {
    // /proc refuses new directories even to root.
    let (code, stderr) = serve("/proc/grid-data");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot create data directory /proc/grid-data"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{stderr}"
    );
}

#[test]
fn a_data_directory_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grid-data");
    std::fs::write(&file, b"not a directory").unwrap();
    let (code, stderr) = serve(file.to_str().unwrap());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot create data directory"), "{stderr}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a directory",
        "the file was touched"
    );
}

#[test]
fn a_store_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("grid.sqlite3");
    let junk = vec![0x5a_u8; 8192];
    std::fs::write(&store, &junk).unwrap();
    let (code, stderr) = serve(dir.path().to_str().unwrap());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a database"), "{stderr}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        junk,
        "the store was modified"
    );
}
