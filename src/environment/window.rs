//! Deploy windows: the days and hours, in a named time zone, when an environment may be
//! deployed to (`environments.<name>.deploy_window`, such as `"Mon-Fri 09:00-16:00
//! Europe/Berlin"`, or a list of such texts).
//!
//! A window is read once, when the config is loaded, into [`DeployWindows`]; whether it is open
//! and when it opens next are pure functions of the window and an instant, so they are tested
//! here against fixed instants (the days clocks change in Europe/Berlin among them) and the
//! engine passes the instant of its pass. Hours are the zone's civil time: `09:00-16:00` is
//! nine to four on the zone's clock in summer and in winter. Hours that wrap midnight
//! (`22:00-02:00`) belong to the day they start on, and a day range may wrap the week
//! (`Fri-Mon`). An opening that falls in a gap (the hour skipped when clocks go forward) is at
//! the end of the gap, the first instant the window's hours are on the clock.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::workspace::diagnostic::excerpt;

/// What the config's key holds: one window or several, any of which lets a deploy start.
#[derive(Debug, Clone)]
pub struct DeployWindows {
    windows: Vec<Window>,
}

/// One window: some days of the week, hours of those days, and the zone they are read in.
#[derive(Debug, Clone)]
pub struct Window {
    /// The text as written, for messages.
    text: String,
    /// Monday first.
    days: [bool; 7],
    /// Seconds since midnight: `start` in 0..86400, `end` in 1..=86400 (`24:00`).
    start: u32,
    end: u32,
    zone: TimeZone,
}

/// Why a deploy window cannot be read. The message quotes what is wrong (a long value by its
/// start and length).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "{} is not a deploy window such as \"Mon-Fri 09:00-16:00 Europe/Berlin\": days, hours and a time zone, separated by spaces",
        excerpt(text, "`", "`")
    )]
    Shape { text: String },
    #[error(
        "{} is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun, a range such as Mon-Fri, or a list such as Mon,Wed",
        excerpt(text, "`", "`")
    )]
    Day { text: String },
    #[error("{} are not hours such as 09:00-16:00 (24-hour clock; 24:00 ends at midnight)", excerpt(text, "`", "`"))]
    Hours { text: String },
    #[error("{} opens and closes at the same time; for a whole day write 00:00-24:00", excerpt(text, "`", "`"))]
    Empty { text: String },
    #[error(
        "{} is not a time zone found in the system's time zone database (an IANA name such as Europe/Berlin, or UTC): {why}",
        excerpt(text, "`", "`")
    )]
    Zone { text: String, why: String },
    #[error("the list of deploy windows is empty: give at least one window, or leave the key out")]
    EmptyList,
    #[error("expected a deploy window such as \"Mon-Fri 09:00-16:00 Europe/Berlin\", or a list of them, found {found}")]
    NotText { found: String },
}

/// Whether the windows are open at an instant, and until when or from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    /// Open; it closes at this instant (none if some window is always open).
    Open { closes: Option<Timestamp> },
    /// Closed; it opens at this instant, shown in the zone of the window that opens then.
    Closed { opens: Option<Timestamp> },
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY: u32 = 86_400;

impl DeployWindows {
    /// The windows of the config's value: a text or a list of texts.
    pub fn from_value(value: &Value) -> Result<DeployWindows, WindowError> {
        match value {
            Value::String(text) => Ok(DeployWindows { windows: vec![Window::parse(text)?] }),
            Value::Array(items) if items.is_empty() => Err(WindowError::EmptyList),
            Value::Array(items) => {
                let windows = items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => Window::parse(text),
                        other => {
                            Err(WindowError::NotText { found: crate::workspace::diagnostic::excerpt_value(other) })
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(DeployWindows { windows })
            }
            other => Err(WindowError::NotText { found: crate::workspace::diagnostic::excerpt_value(other) }),
        }
    }

    /// Whether a deploy may start at `at`: some window is open.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.windows.iter().any(|w| w.is_open(at))
    }

    /// Open or closed at `at`, and the next instant that changes it.
    pub fn state(&self, at: Timestamp) -> WindowState {
        if self.is_open(at) {
            let closes = self.windows.iter().filter(|w| w.is_open(at)).map(|w| w.closes_after(at)).max().flatten();
            WindowState::Open { closes }
        } else {
            WindowState::Closed { opens: self.next_open(at) }
        }
    }

    /// The first instant after `at` at which some window is open (within the next eight
    /// days; none when every opening falls in a gap of the clock, which no real window does).
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        self.windows.iter().filter_map(|w| w.next_open(at)).min()
    }

    /// The windows as written, `Mon-Fri 09:00-16:00 Europe/Berlin, Sat 10:00-12:00 UTC`.
    pub fn text(&self) -> String {
        self.windows.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// `at` on the clock of the window that opens or closes then (the first window's clock
    /// otherwise): `2026-12-07 09:00 CET (2026-12-07 08:00 UTC)`.
    pub fn local(&self, at: Timestamp) -> String {
        let window = self
            .windows
            .iter()
            .find(|w| w.next_open(at.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(at)) == Some(at))
            .or_else(|| self.windows.first());
        let Some(window) = window else { return crate::time::stamp(at) };
        let utc = TimeZone::UTC.to_datetime(at).strftime("%Y-%m-%d %H:%M").to_string();
        let shown = window.zone.to_datetime(at).strftime("%Y-%m-%d %H:%M").to_string();
        let abbreviation = window.zone.to_offset_info(at).abbreviation().to_owned();
        if abbreviation == "UTC" { format!("{utc} UTC") } else { format!("{shown} {abbreviation} ({utc} UTC)") }
    }

    /// One line for a check, a request or `status`: the windows and whether they are open
    /// at `at`: `Mon-Fri 09:00-16:00 Europe/Berlin (closed now, opens 2026-12-07 09:00 CET
    /// (2026-12-07 08:00 UTC))`.
    pub fn describe(&self, at: Timestamp) -> String {
        let text = self.text();
        match self.state(at) {
            WindowState::Open { closes: Some(closes) } => format!("{text} (open now, closes {})", self.local(closes)),
            WindowState::Open { closes: None } => format!("{text} (open now)"),
            WindowState::Closed { opens: Some(opens) } => format!("{text} (closed now, opens {})", self.local(opens)),
            WindowState::Closed { opens: None } => format!("{text} (closed now, and it does not open within a week)"),
        }
    }
}

impl<'de> Deserialize<'de> for DeployWindows {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DeployWindows, D::Error> {
        let value = Value::deserialize(deserializer)?;
        DeployWindows::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DeployWindows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Window {
    /// Reads `DAYS HH:MM-HH:MM ZONE`.
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, hours, zone] = parts[..] else { return Err(WindowError::Shape { text: text.to_owned() }) };
        let days = parse_days(days)?;
        let (start, end) = parse_hours(hours)?;
        let zone = TimeZone::get(zone).map_err(|e| WindowError::Zone { text: zone.to_owned(), why: e.to_string() })?;
        Ok(Window { text: parts.join(" "), days, start, end, zone })
    }

    /// Whether the zone's clock at `at` shows a listed day and an hour of the window (for
    /// hours that wrap midnight, the evening of a listed day or the morning after it).
    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = self.zone.to_datetime(at);
        let second = seconds_of(local);
        let day = local.weekday().to_monday_zero_offset() as usize;
        if self.start < self.end {
            self.days[day] && (self.start..self.end).contains(&second)
        } else {
            let before = (day + 6) % 7;
            (self.days[day] && second >= self.start) || (self.days[before] && second < self.end)
        }
    }

    /// The first instant after `at` at which this window is open.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        let today = self.zone.to_datetime(at).date();
        (-1..=8)
            .filter_map(|offset| today.checked_add(jiff::Span::new().days(offset)).ok())
            .filter(|date| self.days[date.weekday().to_monday_zero_offset() as usize])
            .filter_map(|date| instant(&self.zone, date, self.start))
            .filter(|opens| *opens > at && self.is_open(*opens))
            .min()
    }

    /// When the window open at `at` closes: the end of the hours it is in.
    fn closes_after(&self, at: Timestamp) -> Option<Timestamp> {
        let today = self.zone.to_datetime(at).date();
        let length = if self.start < self.end { self.end - self.start } else { DAY - self.start + self.end };
        (-1..=1)
            .filter_map(|offset| today.checked_add(jiff::Span::new().days(offset)).ok())
            .filter(|date| self.days[date.weekday().to_monday_zero_offset() as usize])
            .filter_map(|date| instant(&self.zone, date, self.start + length))
            .filter(|closes| *closes > at)
            .min()
    }
}

/// The seconds since midnight the clock shows.
fn seconds_of(local: DateTime) -> u32 {
    let time = local.time();
    time.hour() as u32 * 3600 + time.minute() as u32 * 60 + time.second() as u32
}

/// The instant the zone's clock shows `seconds` after the midnight that starts `date` (which
/// may be a day or more past it). A time in a gap is the end of the gap; a time shown twice
/// (clocks going back) is the first of the two.
fn instant(zone: &TimeZone, date: Date, seconds: u32) -> Option<Timestamp> {
    let date = date.checked_add(jiff::Span::new().days(i64::from(seconds / DAY))).ok()?;
    let seconds = seconds % DAY;
    let civil = date.at((seconds / 3600) as i8, (seconds / 60 % 60) as i8, (seconds % 60) as i8, 0);
    let ambiguous = zone.to_ambiguous_timestamp(civil);
    match ambiguous.offset() {
        AmbiguousOffset::Gap { before, .. } => {
            // Read with the offset before the gap, the time lies past the transition: the
            // transition just before it is where the gap ends.
            let past = before.to_timestamp(civil).ok()?;
            zone.preceding(past).next().map(|transition| transition.timestamp())
        }
        _ => ambiguous.compatible().ok(),
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], WindowError> {
    let bad = || WindowError::Day { text: text.to_owned() };
    let day = |name: &str| DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(name));
    let mut days = [false; 7];
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from).ok_or_else(bad)?, day(to).ok_or_else(bad)?);
                // A range may wrap the week: Fri-Mon is Friday to Monday.
                let mut at = from;
                loop {
                    days[at] = true;
                    if at == to {
                        break;
                    }
                    at = (at + 1) % 7;
                }
            }
            None => days[day(item).ok_or_else(bad)?] = true,
        }
    }
    Ok(days)
}

fn parse_hours(text: &str) -> Result<(u32, u32), WindowError> {
    let bad = || WindowError::Hours { text: text.to_owned() };
    let clock = |part: &str| -> Option<u32> {
        let (hour, minute) = part.split_once(':')?;
        if hour.len() != 2 || minute.len() != 2 || !(hour.bytes().chain(minute.bytes())).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (hour, minute): (u32, u32) = (hour.parse().ok()?, minute.parse().ok()?);
        (minute < 60 && (hour < 24 || (hour == 24 && minute == 0))).then_some(hour * 3600 + minute * 60)
    };
    let (from, to) = text.split_once('-').ok_or_else(bad)?;
    let (start, end) = (clock(from).ok_or_else(bad)?, clock(to).ok_or_else(bad)?);
    if start == DAY {
        return Err(bad());
    }
    if start == end {
        return Err(WindowError::Empty { text: text.to_owned() });
    }
    // `22:00-00:00` ends at midnight; it does not wrap.
    Ok((start, if end == 0 { DAY } else { end }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn windows(value: Value) -> DeployWindows {
        DeployWindows::from_value(&value).unwrap()
    }

    fn error(value: Value) -> String {
        DeployWindows::from_value(&value).unwrap_err().to_string()
    }

    // 2026-12-07 is a Monday; Berlin is on CET (UTC+1) then.
    #[test]
    fn office_hours_in_berlin_open_at_nine_on_the_zones_clock() {
        let w = windows(Value::from("Mon-Fri 09:00-16:00 Europe/Berlin"));
        assert!(!w.is_open(at("2026-12-07T07:59:59Z")));
        assert!(w.is_open(at("2026-12-07T08:00:00Z")));
        assert!(w.is_open(at("2026-12-07T14:59:59Z")));
        assert!(!w.is_open(at("2026-12-07T15:00:00Z")));
        assert_eq!(w.next_open(at("2026-12-07T07:59:00Z")), Some(at("2026-12-07T08:00:00Z")));
        // Friday after four: next Monday.
        assert_eq!(w.next_open(at("2026-12-11T15:30:00Z")), Some(at("2026-12-14T08:00:00Z")));
        assert_eq!(
            w.describe(at("2026-12-07T07:59:00Z")),
            "Mon-Fri 09:00-16:00 Europe/Berlin (closed now, opens 2026-12-07 09:00 CET (2026-12-07 08:00 UTC))"
        );
        assert_eq!(
            w.describe(at("2026-12-07T10:00:00Z")),
            "Mon-Fri 09:00-16:00 Europe/Berlin (open now, closes 2026-12-07 16:00 CET (2026-12-07 15:00 UTC))"
        );
    }

    // Clocks go forward on Sunday 2026-03-29 (02:00 CET becomes 03:00 CEST) and back on
    // Sunday 2026-10-25 (03:00 CEST becomes 02:00 CET).
    #[test]
    fn the_days_clocks_change_in_berlin_keep_the_hours_of_the_zones_clock() {
        let w = windows(Value::from("Mon-Fri 09:00-16:00 Europe/Berlin"));
        // Friday before the change, after four (CET): Monday nine is 07:00 UTC (CEST).
        assert_eq!(w.next_open(at("2026-03-27T15:30:00Z")), Some(at("2026-03-30T07:00:00Z")));
        assert!(w.is_open(at("2026-03-30T07:00:00Z")));
        assert!(!w.is_open(at("2026-03-30T06:59:59Z")));
        // And back: Friday in CEST, Monday nine is 08:00 UTC (CET).
        assert_eq!(w.next_open(at("2026-10-23T14:30:00Z")), Some(at("2026-10-26T08:00:00Z")));

        // A window that starts in the skipped hour opens when the gap ends, at 03:00 CEST.
        let night = windows(Value::from("Sun 02:30-04:00 Europe/Berlin"));
        assert_eq!(night.next_open(at("2026-03-29T00:00:00Z")), Some(at("2026-03-29T01:00:00Z")));
        assert!(night.is_open(at("2026-03-29T01:00:00Z")));
        assert!(!night.is_open(at("2026-03-29T00:59:59Z")));
        assert_eq!(night.local(at("2026-03-29T01:00:00Z")), "2026-03-29 03:00 CEST (2026-03-29 01:00 UTC)");
        // On the night clocks go back, 02:30 is shown twice: the window opens at the first.
        assert_eq!(night.next_open(at("2026-10-24T22:00:00Z")), Some(at("2026-10-25T00:30:00Z")));
        // An hour that exists only in the gap never opens that day, but does the next week.
        let gap = windows(Value::from("Sun 02:00-02:30 Europe/Berlin"));
        assert!(!gap.is_open(at("2026-03-29T01:00:00Z")));
        assert_eq!(gap.next_open(at("2026-03-28T12:00:00Z")), Some(at("2026-04-05T00:00:00Z")));
    }

    #[test]
    fn hours_that_wrap_midnight_belong_to_the_day_they_start_on() {
        let w = windows(Value::from("Fri 22:00-02:00 UTC"));
        assert!(w.is_open(at("2026-12-11T22:00:00Z")), "Friday evening");
        assert!(w.is_open(at("2026-12-12T01:59:59Z")), "the Saturday morning after it");
        assert!(!w.is_open(at("2026-12-12T02:00:00Z")));
        assert!(!w.is_open(at("2026-12-12T22:30:00Z")), "Saturday evening is not listed");
        assert!(!w.is_open(at("2026-12-11T01:00:00Z")), "Friday morning belongs to Thursday");
        assert_eq!(w.next_open(at("2026-12-12T03:00:00Z")), Some(at("2026-12-18T22:00:00Z")));
        assert_eq!(w.state(at("2026-12-11T23:00:00Z")), WindowState::Open { closes: Some(at("2026-12-12T02:00:00Z")) });
        assert_eq!(w.local(at("2026-12-18T22:00:00Z")), "2026-12-18 22:00 UTC");
    }

    #[test]
    fn day_ranges_may_wrap_the_week_and_lists_any_window_opens() {
        let weekend = windows(Value::from("Fri-Mon 10:00-12:00 UTC"));
        for (day, open) in [("07", true), ("08", false), ("10", false), ("11", true), ("12", true), ("13", true)] {
            assert_eq!(weekend.is_open(at(&format!("2026-12-{day}T11:00:00Z"))), open, "2026-12-{day}");
        }
        let w = windows(serde_json::json!(["Mon-Fri 09:00-16:00 Europe/Berlin", "Sat 10:00-12:00 UTC"]));
        assert!(w.is_open(at("2026-12-12T11:00:00Z")));
        assert!(!w.is_open(at("2026-12-13T11:00:00Z")));
        // Saturday after noon: Monday, 08:00 UTC.
        assert_eq!(w.next_open(at("2026-12-12T12:00:00Z")), Some(at("2026-12-14T08:00:00Z")));
        // Friday after four in Berlin: Saturday ten, in the UTC window's clock.
        assert_eq!(w.next_open(at("2026-12-11T15:00:00Z")), Some(at("2026-12-12T10:00:00Z")));
        assert_eq!(w.local(at("2026-12-12T10:00:00Z")), "2026-12-12 10:00 UTC");
        let list = windows(Value::from("Mon,Wed 00:00-24:00 UTC"));
        assert!(list.is_open(at("2026-12-09T23:59:59Z")));
        assert!(!list.is_open(at("2026-12-08T12:00:00Z")));
        assert_eq!(
            list.state(at("2026-12-07T12:00:00Z")),
            WindowState::Open { closes: Some(at("2026-12-08T00:00:00Z")) }
        );
    }

    #[test]
    fn a_window_that_cannot_be_read_says_what_is_wrong() {
        assert!(error(Value::from("Mon-Fri 09:00-16:00")).contains("`Mon-Fri 09:00-16:00` is not a deploy window"));
        assert!(error(Value::from("Mo-Fr 09:00-16:00 UTC")).starts_with("`Mo-Fr` is not a day"));
        assert!(error(Value::from("Mon 9-16 UTC")).starts_with("`9-16` are not hours such as 09:00-16:00"));
        assert!(error(Value::from("Mon 09:00-25:00 UTC")).starts_with("`09:00-25:00` are not hours"));
        assert!(error(Value::from("Mon 09:00-09:00 UTC")).contains("opens and closes at the same time"));
        assert!(error(Value::from("Mon 09:00-10:00 Europe/Berln")).starts_with("`Europe/Berln` is not a time zone"));
        assert_eq!(error(serde_json::json!([])), WindowError::EmptyList.to_string());
        assert!(error(serde_json::json!(["Mon 09:00-10:00 UTC", 5])).ends_with("found 5"));
        assert!(error(Value::from(true)).ends_with("found true"));
    }
}
