//! Who runs a piece of background work (`host:pid`), and whether that process may still be
//! running it: how an interrupted sync or build is told from one that is still going.

/// This machine's name: `POLDER_NODE_NAME` when set (a node name that differs from the
/// hostname, e.g. to run several "hosts" on one machine), else the hostname.
pub fn host_name() -> String {
    if let Ok(name) = std::env::var("POLDER_NODE_NAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_string();
    }
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
        return Some(process_running(pid));
    }
    heartbeat_at.map(|at| now_ms - at < stale_after_ms)
}

/// Whether process `pid` exists and has not exited: a zombie (exited, not yet reaped by its
/// parent) still has a /proc entry but runs nothing.
fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in parentheses and
        // may itself contain spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| !matches!(state, "Z" | "X" | "x")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        assert_eq!(runner_alive(&runner_identity(), None, 0, 1), Some(true));
        let dead = format!("{}:{}", host_name(), u32::MAX - 7);
        assert_eq!(runner_alive(&dead, None, 0, 1), Some(false));
        // An exited child that nobody has reaped yet is dead too.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("true runs");
        let zombie = format!("{}:{}", host_name(), child.id());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(runner_alive(&zombie, None, 0, 1), Some(false));
        child.wait().expect("reaped");
        assert_eq!(runner_alive("elsewhere:1", None, 0, 1), None);
        assert_eq!(runner_alive("elsewhere:1", Some(100), 150, 60), Some(true));
        assert_eq!(runner_alive("elsewhere:1", Some(100), 200, 60), Some(false));
    }
}
