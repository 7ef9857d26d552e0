//! Durations as the config writes them (`500ms`, `30s`, `5m`): the one parser, the one
//! formatter, serde adapters for typed fields, and the default of every duration-valued key.
//!
//! A leaf: it knows nothing of the config, the rollout or the runner, so every layer can read
//! durations the same way. Its messages quote a value through `workspace::diagnostic::excerpt`
//! (a pure function of the text).

use std::time::Duration;

use crate::workspace::diagnostic::{QUOTE_WHOLE, excerpt};

/// The default of every duration-valued key, in one place (docs/reference.md lists them).
pub mod defaults {
    use std::time::Duration;

    /// `devops.poll_interval`: the daemon's full resync.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(5 * 60);
    /// `devops.debounce`: quiet time before a reconcile.
    pub const DEBOUNCE: Duration = Duration::from_millis(50);
    /// `devops.monitoring_period`: how long production is watched after a deploy.
    pub const MONITORING_PERIOD: Duration = Duration::from_secs(60 * 60);
    /// `devops.monitoring_interval`: how often it is sampled, and the default
    /// `analysis.interval`.
    pub const MONITORING_INTERVAL: Duration = Duration::from_secs(60);
    /// `devops.verification_timeout`: a command's timeout unless it sets its own.
    pub const VERIFICATION_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    /// `devops.shutdown_grace`: how long a running step may finish on shutdown.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// A health check's or smoke test's `interval` between retries.
    pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
    /// An HTTP check's `timeout` (a command check's is `devops.verification_timeout`).
    pub const HTTP_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
    /// `metrics.timeout`: how long one sample may take, all queries together.
    pub const METRICS_SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `git.fetch_interval`: how often `watch` fetches when nothing changed locally.
    pub const GIT_FETCH_INTERVAL: Duration = Duration::from_secs(5);
}

/// A duration the config cannot hold, with the text as written. The message quotes a long
/// text only by its start and length (`excerpt`): a token given where a duration belongs must
/// not be repeated whole into stderr or `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{} is not a duration such as \"500ms\", \"30s\" or \"5m\"", excerpt(text, "`", "`"))]
    NotADuration { text: String },
    #[error("{}", no_unit(text))]
    NoUnit { text: String },
    #[error("{} has an unknown unit {}; use ms, s, m, h or d", excerpt(text, "`", "`"), excerpt(unit, "`", "`"))]
    UnknownUnit { text: String, unit: String },
    #[error("{} is too long a duration; the longest is 36500d (100 years)", excerpt(text, "`", "`"))]
    TooLong { text: String },
}

/// A number without a unit, with the spellings that would do (for a number short enough to
/// repeat).
fn no_unit(text: &str) -> String {
    let shown = excerpt(text, "`", "`");
    if text.chars().count() > QUOTE_WHOLE {
        return format!("{shown} has no unit; add one: ms, s, m, h or d");
    }
    format!("{shown} has no unit; write \"{text}s\", \"{text}ms\" or \"{text}m\"")
}

/// The longest duration the config takes: 100 years. Longer ones are mistakes, and a deadline
/// that far (`Instant::now() + d`) could overflow the clock, which panics.
pub const MAX_DURATION: Duration = Duration::from_secs(36500 * 86400);

/// Parses a duration with a unit: `500ms`, `30s`, `5m`, `1h`, `1d`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| DurationError::NotADuration { text: text.to_owned() })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        "" => return Err(DurationError::NoUnit { text: text.to_owned() }),
        _ => return Err(DurationError::UnknownUnit { text: text.to_owned(), unit: unit.to_owned() }),
    };
    // A duration past what `Duration` holds (about 584 billion years) is a mistake, not a
    // reason to panic; so is one past `MAX_DURATION`.
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| DurationError::TooLong { text: text.to_owned() })
}

/// A duration the way the config writes it, in the largest unit that holds it exactly
/// (`1h`, `90s`, `500ms`), or seconds with a fraction; [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    const MS: u128 = 1_000_000;
    const S: u128 = 1000 * MS;
    for (unit, size) in [("d", 86_400 * S), ("h", 3600 * S), ("m", 60 * S), ("s", S), ("ms", MS)] {
        if nanos != 0 && nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    if nanos == 0 {
        return "0s".to_owned();
    }
    let fraction = format!("{:09}", duration.subsec_nanos());
    format!("{}.{}s", duration.as_secs(), fraction.trim_end_matches('0'))
}

/// Serde adapters for a duration written the config's way (`"500ms"`, `"30s"`, `"5m"`), for
/// `#[serde(with = ...)]` or `deserialize_with`: a value that is not one is an error, never
/// a silent default.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*duration))
    }

    /// The same for an optional key.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(deserializer)? {
                Some(text) => super::super::parse_duration(&text).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }

        pub fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
            match duration {
                Some(duration) => serializer.serialize_str(&super::super::format_duration(*duration)),
                None => serializer.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("300").unwrap_err().to_string().contains("no unit"));
        assert!(parse_duration("3y").unwrap_err().to_string().contains("unknown unit"));
    }

    /// A duration error quoted a bad value whole, a token pasted into the wrong key and a
    /// 5000-digit number (three times over) alike.
    #[test]
    fn a_long_bad_duration_is_quoted_by_its_start_and_length() {
        assert_eq!(
            parse_duration("ghp_T0kenT0kenT0kenT0kenT0kenT0ken").unwrap_err().to_string(),
            "`ghp_T0ke…` (34 characters) is not a duration such as \"500ms\", \"30s\" or \"5m\""
        );
        assert_eq!(
            parse_duration(&"9".repeat(5000)).unwrap_err().to_string(),
            "`99999999…` (5000 characters) has no unit; add one: ms, s, m, h or d"
        );
        assert_eq!(
            parse_duration(&format!("5{}", "y".repeat(40))).unwrap_err().to_string(),
            "`5yyyyyyy…` (41 characters) has an unknown unit `yyyyyyyy…` (40 characters); use ms, s, m, h or d"
        );
        assert_eq!(
            parse_duration("300").unwrap_err().to_string(),
            "`300` has no unit; write \"300s\", \"300ms\" or \"300m\""
        );
    }

    #[test]
    fn overflowing_durations_are_errors_not_panics() {
        for text in ["99999999999999999999h", "99999999999999999999999d", &format!("{}s", "9".repeat(400))] {
            assert!(matches!(parse_duration(text), Err(DurationError::TooLong { .. })), "{text}");
        }
        assert_eq!(parse_duration("36500d").unwrap(), Duration::from_secs(36500 * 86400));
        // Within what `Duration` holds, but a deadline that far would overflow the clock.
        assert!(matches!(parse_duration("200000000000000d"), Err(DurationError::TooLong { .. })));
        assert!(matches!(parse_duration("36501d"), Err(DurationError::TooLong { .. })));
    }

    #[test]
    fn formatted_durations_read_back() {
        for (duration, text) in [
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1500), "0.0015s"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(2 * 86400), "2d"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text).unwrap(), duration, "{text}");
        }
    }
}
