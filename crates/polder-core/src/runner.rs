//! Who runs a piece of background work (`host:pid`), and whether that process may still be
//! running it: how an interrupted sync or build is told from one that is still going.

/// This machine's name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `host:pid` of this process.
pub fn runner_identity() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// Whether the process `runner` (`host:pid`) may still be running its work: on this host, by
/// whether the process exists; elsewhere, by a heartbeat younger than `stale_after_ms`.
/// `None` when that cannot be told (another host and no heartbeat).
pub fn runner_alive(
    runner: &str,
    heartbeat_at: Option<i64>,
    now_ms: i64,
    stale_after_ms: i64,
) -> Option<bool> {
    if let Some((host, pid)) = runner.rsplit_once(':')
        && host == host_name()
        && let Ok(pid) = pid.parse::<u32>()
    {
        if pid == std::process::id() {
            return Some(true);
        }
        return Some(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    heartbeat_at.map(|at| now_ms - at < stale_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        assert_eq!(runner_alive(&runner_identity(), None, 0, 1), Some(true));
        let dead = format!("{}:{}", host_name(), u32::MAX - 7);
        assert_eq!(runner_alive(&dead, None, 0, 1), Some(false));
        assert_eq!(runner_alive("elsewhere:1", None, 0, 1), None);
        assert_eq!(runner_alive("elsewhere:1", Some(100), 150, 60), Some(true));
        assert_eq!(runner_alive("elsewhere:1", Some(100), 200, 60), Some(false));
    }
}
