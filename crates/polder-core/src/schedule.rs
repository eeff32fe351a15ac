//! Cron schedules of scheduled work (connection syncs, project builds): parsing (5 fields, or
//! 6 with seconds first; UTC), the next time one fires, and a planner that tells which named
//! schedules are due.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A schedule that is not a cron expression; the message says what one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "schedule '{text}' is not a cron expression ({reason}); use 5 fields (minute hour day-of-month month day-of-week, UTC), e.g. '*/15 * * * *', or 6 with seconds first"
)]
pub struct ScheduleError {
    pub text: String,
    pub reason: String,
}

/// Parses a cron expression such as `*/15 * * * *` or `0 3 * * MON-FRI`.
pub fn parse_schedule(text: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(text.trim())
        .map_err(|e| ScheduleError {
            text: text.to_string(),
            reason: e.to_string(),
        })
}

/// The first time after `after` that `schedule` fires.
pub fn next_run(schedule: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.find_next_occurrence(&after, false).ok()
}

struct Planned {
    text: String,
    cron: Cron,
    due: DateTime<Utc>,
}

/// Remembers when each named schedule fires next. A schedule is parsed once per text; a new
/// text is planned from the moment it is seen, so a changed schedule never fires for the past.
#[derive(Default)]
pub struct CronPlanner {
    planned: HashMap<String, Planned>,
    seen: HashSet<String>,
}

impl CronPlanner {
    pub fn new() -> Self {
        CronPlanner::default()
    }

    /// Whether `name`, scheduled by `text`, is due at `now`; when it is, its next time is
    /// planned. A text that does not parse is never due.
    pub fn due(&mut self, name: &str, text: &str, now: DateTime<Utc>) -> bool {
        self.seen.insert(name.to_string());
        let stale = self.planned.get(name).is_none_or(|p| p.text != text);
        if stale {
            let Ok(cron) = parse_schedule(text) else {
                self.planned.remove(name);
                return false;
            };
            let due = next_run(&cron, now).unwrap_or(DateTime::<Utc>::MAX_UTC);
            self.planned.insert(
                name.to_string(),
                Planned {
                    text: text.to_string(),
                    cron,
                    due,
                },
            );
        }
        let Some(planned) = self.planned.get_mut(name) else {
            return false;
        };
        if planned.due > now {
            return false;
        }
        planned.due = next_run(&planned.cron, now).unwrap_or(DateTime::<Utc>::MAX_UTC);
        true
    }

    /// Ends a round of [`CronPlanner::due`] calls: names not asked about since the last round
    /// (their schedule was removed) are forgotten.
    pub fn end_round(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.planned.retain(|name, _| seen.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_runs_follow_the_expression() {
        let cron = parse_schedule("*/15 * * * *").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 10, 7, 0).unwrap();
        assert_eq!(
            next_run(&cron, at),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 15, 0).unwrap())
        );
        let seconds = parse_schedule("*/10 * * * * *").unwrap();
        assert_eq!(
            next_run(&seconds, at),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 7, 10).unwrap())
        );
        let daily = parse_schedule("0 3 * * *").unwrap();
        assert_eq!(
            next_run(&daily, at),
            Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn nonsense_is_refused_with_a_hint() {
        let err = parse_schedule("every hour").unwrap_err().to_string();
        assert!(
            err.contains("every hour") && err.contains("5 fields"),
            "{err}"
        );
    }

    #[test]
    fn the_planner_fires_once_per_occurrence_and_replans_changed_texts() {
        let mut planner = CronPlanner::new();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 7, 0).unwrap();
        assert!(
            !planner.due("a", "*/15 * * * *", t0),
            "planned from now, not fired"
        );
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 15, 0).unwrap();
        assert!(planner.due("a", "*/15 * * * *", t1));
        assert!(!planner.due("a", "*/15 * * * *", t1), "once per occurrence");
        assert!(
            !planner.due("a", "0 3 * * *", t1),
            "a new text is planned from now"
        );
        assert!(!planner.due("b", "every hour", t1), "nonsense never fires");
        planner.end_round();
        planner.end_round();
        assert!(
            planner.planned.is_empty(),
            "names not asked about are forgotten"
        );
    }
}
