//! How the client commands print what the coordinator answers: tables for
//! people, pretty JSON with `--json`.

use serde_json::Value;

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values print")
    );
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

fn result_text(status: &Value) -> String {
    let result = &status["result"];
    if result.is_null() {
        return status["error"]
            .as_str()
            .map_or_else(|| "-".into(), |e| format!("error: {e}"));
    }
    match status["kernel"].as_str() {
        Some("primes") => format!("{} primes", result["count"]),
        Some("montecarlo-pi") => format!(
            "pi ~ {} ({} of {} inside)",
            result["estimate"], result["inside"], result["samples"]
        ),
        Some("hashsearch") => {
            let nonces = result["nonces"].as_array().map_or(0, Vec::len);
            format!("{nonces} nonces")
        }
        Some("mandelbrot") => format!(
            "{}x{} image (grid results {} --format png -o image.png)",
            result["width"], result["height"], status["id"]
        ),
        _ => result.to_string(),
    }
}

pub(crate) fn print_status(status: &Value) {
    println!(
        "job {}  {}  {}",
        status["id"],
        status["kernel"].as_str().unwrap_or("?"),
        status["state"].as_str().unwrap_or("?")
    );
    let (done, total) = (
        status["tasks"]["done"].as_u64().unwrap_or(0),
        status["tasks"]["total"].as_u64().unwrap_or(0),
    );
    println!("  tasks    {done}/{total}");
    println!("  elapsed  {}", seconds(status["elapsed_ms"].as_u64()));
    println!("  result   {}", result_text(status));
}

pub(crate) fn print_jobs(jobs: &[Value]) {
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    println!(
        "{:>5}  {:<14} {:<10} {:>17}  {:>10}  RESULT",
        "ID", "KERNEL", "STATE", "TASKS", "ELAPSED"
    );
    for job in jobs {
        println!(
            "{:>5}  {:<14} {:<10} {:>17}  {:>10}  {}",
            job["id"].to_string(),
            job["kernel"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?"),
            format!("{}/{}", job["tasks"]["done"], job["tasks"]["total"]),
            seconds(job["elapsed_ms"].as_u64()),
            result_text(job),
        );
    }
}

pub(crate) fn print_workers(workers: &[Value]) {
    if workers.is_empty() {
        println!("no workers connected");
        return;
    }
    println!(
        "{:>5}  {:<8} {:>7}  {:>10}  NAME",
        "ID", "KIND", "THREADS", "TASKS DONE"
    );
    for w in workers {
        println!(
            "{:>5}  {:<8} {:>7}  {:>10}  {}",
            w["id"].to_string(),
            w["kind"].as_str().unwrap_or("?"),
            w["threads"].to_string(),
            w["tasks_done"].to_string(),
            w["name"].as_str().unwrap_or("")
        );
    }
}
