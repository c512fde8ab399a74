//! What a child process and its metrics say of it: memory from `/proc/PID/status`, reconciles
//! from the admin port's exposition. Shared by the controller's memory test and the W2 bench.

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `RssAnon:` …); 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `finrep_reconciles_total` of one kind in a metrics exposition.
pub fn reconciles(metrics: &str, kind: &str) -> u64 {
    let prefix = format!("finrep_reconciles_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
