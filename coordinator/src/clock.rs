//! Wall-clock time as the API shows it: Unix milliseconds. (Durations inside
//! the coordinator use tokio's monotonic clock instead.)

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
