//! Recovery timing (SPEC §5.2) as pure functions of `now` and the delivery: when the
//! status message is due, when the delivery gives up, and how long the next wait in a
//! delay tier is. The pipeline asks these with the wall clock; the tests ask them with
//! instants of their choosing, in milliseconds, so no test waits for a threshold.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest a prompt that starts past the status threshold runs before the status
/// message is posted.
const PROMPT_STATUS_GRACE: Duration = Duration::from_secs(1);

/// The shortest wait of a recovery copy: never straight back by accident (a zero wait
/// is the wake-up's, and means "a runtime is ready").
const MIN_RECOVERY_WAIT: Duration = Duration::from_millis(1);

/// The two instants of one delivery, both counted from the gateway's `receivedAt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Deadlines {
    /// `receivedAt + SPRITZ_SLACK_STATUS_MESSAGE_DELAY`: "still waking up" is due.
    threshold: DateTime<Utc>,
    /// `receivedAt + SPRITZ_SLACK_PROCESSING_TIMEOUT`: recovery gives up.
    deadline: DateTime<Utc>,
    /// The status delay itself, which also bounds the grace of a late prompt.
    status_delay: Duration,
}

impl Deadlines {
    pub(super) fn new(
        received_at: DateTime<Utc>,
        status_delay: Duration,
        processing_timeout: Duration,
    ) -> Self {
        Self {
            threshold: received_at + chrono_duration(status_delay),
            deadline: received_at + chrono_duration(processing_timeout),
            status_delay,
        }
    }

    /// The status message may be posted (the user has waited long enough to be told).
    pub(super) fn status_due(&self, now: DateTime<Utc>) -> bool {
        now >= self.threshold
    }

    /// Recovery is over: the user gets the terminal failure message (or the message is
    /// parked when nobody can be told).
    pub(super) fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline
    }

    /// How long a copy waiting for a runtime stays in its delay tier: the retry
    /// interval, shortened so it is back when the status message falls due (unless
    /// one is visible already) and not after the deadline.
    pub(super) fn recovery_wait(
        &self,
        now: DateTime<Utc>,
        status_visible: bool,
        interval: Duration,
    ) -> Duration {
        let mut after = interval;
        if !status_visible && self.threshold > now {
            after = after.min(until(now, self.threshold));
        }
        after.min(until(now, self.deadline)).max(MIN_RECOVERY_WAIT)
    }

    /// How long a prompt starting at `now` runs before the status message is posted:
    /// until the threshold, but at least a short grace, so a turn that starts after
    /// it (a backlog, a replay) and is answered at once is not preceded by "still
    /// waking up".
    pub(super) fn prompt_status_wait(&self, now: DateTime<Utc>) -> Duration {
        let grace = self.status_delay.min(PROMPT_STATUS_GRACE);
        until(now, self.threshold).max(grace)
    }
}

/// `to - from`, zero when `to` is past.
pub(super) fn until(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn received() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000).expect("instant")
    }

    fn at(ms: i64) -> DateTime<Utc> {
        received() + chrono::Duration::milliseconds(ms)
    }

    /// The production defaults: status after 3s, deadline after 60s.
    fn defaults() -> Deadlines {
        Deadlines::new(received(), Duration::from_secs(3), Duration::from_secs(60))
    }

    #[test]
    fn the_status_message_is_due_at_the_threshold_not_a_millisecond_before() {
        let deadlines = defaults();
        assert!(!deadlines.status_due(at(0)));
        assert!(!deadlines.status_due(at(2_999)));
        assert!(deadlines.status_due(at(3_000)));
        assert!(deadlines.status_due(at(59_999)));
    }

    #[test]
    fn recovery_gives_up_at_the_deadline_not_a_millisecond_before() {
        let deadlines = defaults();
        assert!(!deadlines.expired(at(3_000)));
        assert!(!deadlines.expired(at(59_999)));
        assert!(deadlines.expired(at(60_000)));
        assert!(deadlines.expired(at(120_000)));
    }

    #[test]
    fn a_waiting_copy_comes_back_when_the_status_message_falls_due() {
        let deadlines = defaults();
        let interval = Duration::from_secs(1);
        assert_eq!(deadlines.recovery_wait(at(0), false, interval), interval);
        assert_eq!(
            deadlines.recovery_wait(at(2_500), false, interval),
            500 * MS
        );
        assert_eq!(deadlines.recovery_wait(at(2_999), false, interval), MS);
        assert_eq!(
            deadlines.recovery_wait(at(2_500), true, interval),
            interval,
            "a visible status message needs no early return"
        );
        assert_eq!(
            deadlines.recovery_wait(at(3_200), false, interval),
            interval,
            "past the threshold the interval is kept"
        );
    }

    #[test]
    fn a_waiting_copy_is_back_by_the_deadline_and_never_straight_back() {
        let deadlines = defaults();
        let interval = Duration::from_secs(5);
        assert_eq!(
            deadlines.recovery_wait(at(57_000), true, interval),
            3_000 * MS
        );
        assert_eq!(deadlines.recovery_wait(at(59_999), true, interval), MS);
        assert_eq!(deadlines.recovery_wait(at(60_000), true, interval), MS);
        assert_eq!(deadlines.recovery_wait(at(90_000), false, interval), MS);
    }

    #[test]
    fn a_prompt_posts_the_status_at_the_threshold_or_after_a_short_grace() {
        let deadlines = defaults();
        assert_eq!(deadlines.prompt_status_wait(at(0)), 3_000 * MS);
        assert_eq!(deadlines.prompt_status_wait(at(1_500)), 1_500 * MS);
        assert_eq!(
            deadlines.prompt_status_wait(at(2_800)),
            1_000 * MS,
            "never less than the grace"
        );
        assert_eq!(deadlines.prompt_status_wait(at(30_000)), 1_000 * MS);
        let short = Deadlines::new(received(), 300 * MS, Duration::from_secs(3));
        assert_eq!(
            short.prompt_status_wait(at(5_000)),
            300 * MS,
            "the grace is no longer than the status delay"
        );
    }

    #[test]
    fn a_threshold_after_the_deadline_never_shortens_a_wait_past_the_deadline() {
        let odd = Deadlines::new(received(), Duration::from_secs(90), Duration::from_secs(60));
        assert_eq!(
            odd.recovery_wait(at(59_000), false, Duration::from_secs(5)),
            1_000 * MS
        );
        assert!(odd.expired(at(60_000)) && !odd.status_due(at(60_000)));
    }
}
