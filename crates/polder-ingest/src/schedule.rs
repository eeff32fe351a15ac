//! Cron schedules of connections: parsing (5 fields, or 6 with seconds; UTC) and the next
//! time a schedule fires.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::error::{IngestError, Result};

/// Parses a cron expression such as `*/15 * * * *` or `0 3 * * MON-FRI`.
pub fn parse_schedule(text: &str) -> Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(text.trim())
        .map_err(|e| {
        IngestError::Config(format!(
            "schedule '{text}' is not a cron expression ({e}); use 5 fields (minute hour day-of-month month day-of-week, UTC), e.g. '*/15 * * * *', or 6 with seconds first"
            ))
        })
}

/// The first time after `after` that `schedule` fires.
pub fn next_run(schedule: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.find_next_occurrence(&after, false).ok()
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
}
