//! The notification outbox: one JSON file per event and channel in `<runtime>/outbox/`, named
//! by the event id, written atomically through `workspace::write`, and moved to
//! `<runtime>/outbox/sent/` once the channel accepted it.
//!
//! An entry holds the notice as the receiver gets it, how many attempts were made, when the next
//! is due (`next_attempt_at`, with milliseconds), the last error (masked) and since when its
//! delivery fails. [`put`] writes an entry only when neither the outbox nor `sent/` has its id,
//! so an event raised again on a later pass is sent once. [`deliver`] sends what is due, oldest
//! first, within a time budget, and gives a channel that failed no second attempt in the same
//! step; a failure waits `retry.initial`, doubled each time up to `retry.max`. Nothing here
//! gives up on an entry: it stays until its channel accepts it, or a person removes the file.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Event, Notice};
use crate::exec::secrets::Secrets;
use crate::workspace::Workspace;

/// One event for one channel, waiting or sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub event_id: String,
    pub channel: String,
    pub event: Event,
    /// What raised the event (a run id, a release and its cause): the event ids of the same
    /// event for other channels are made from it.
    pub cause: String,
    pub notice: Notice,
    pub created_at: String,
    pub attempts: u32,
    pub next_attempt_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The first failed attempt's time, while the entry is not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The marker key of the human request an escalation is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_key: Option<String>,
}

/// One attempt, for the log, `/metrics` and the escalation's **Contacts Notified** line.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: String,
    pub event: Event,
    pub accepted: bool,
    pub error: Option<String>,
    pub cause: String,
    pub request_key: Option<String>,
}

/// A channel whose deliveries fail: since when, why, and how many entries wait for it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelHealth {
    pub channel: String,
    pub pending: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The channel is no longer in the config: its entries are not sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unconfigured: bool,
}

/// What `status` shows of the outbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxStatus {
    pub pending: usize,
    /// Channels with pending entries, in name order.
    pub channels: Vec<ChannelHealth>,
    /// Files of the outbox that are not entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

fn dir(ws: &Workspace) -> PathBuf {
    ws.path(&ws.config.paths.runtime).join("outbox")
}

fn pending_path(ws: &Workspace, id: &str) -> PathBuf {
    dir(ws).join(format!("{id}.json"))
}

fn sent_path(ws: &Workspace, id: &str) -> PathBuf {
    dir(ws).join("sent").join(format!("{id}.json"))
}

/// The time now in milliseconds since the epoch.
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// RFC 3339 UTC with milliseconds.
fn stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| format!("{t:.3}")).unwrap_or_default()
}

fn parse_stamp(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

fn write(ws: &Workspace, path: &std::path::Path, entry: &Entry) -> io::Result<()> {
    let text = format!("{}\n", serde_json::to_string_pretty(entry).expect("an entry serializes"));
    crate::workspace::write::write_file(&ws.root, path, text.as_bytes())
}

fn load(path: &std::path::Path) -> Option<Result<Entry, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(serde_json::from_str(&text).map_err(|e| e.to_string()))
}

/// Writes the entry of `notice` unless the outbox or `sent/` has its id; returns whether it
/// wrote one.
pub fn put(ws: &Workspace, notice: Notice, request_key: Option<String>, cause: &str) -> io::Result<bool> {
    let id = notice.event_id.clone();
    let path = pending_path(ws, &id);
    if path.exists() || sent_path(ws, &id).exists() {
        return Ok(false);
    }
    let event = serde_json::from_value(serde_json::Value::String(notice.event.clone()))
        .map_err(|e| io::Error::other(format!("not an event: {e}")))?;
    let now = now_ms();
    let entry = Entry {
        event_id: id,
        channel: notice.channel.clone(),
        event,
        cause: cause.to_owned(),
        notice,
        created_at: stamp(now),
        attempts: 0,
        next_attempt_at: stamp(now),
        last_error: None,
        failing_since: None,
        delivered_at: None,
        request_key,
    };
    write(ws, &path, &entry)?;
    Ok(true)
}

/// Whether any entry waits.
pub fn has_pending(ws: &Workspace) -> bool {
    std::fs::read_dir(dir(ws))
        .map(|mut list| list.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))))
        .unwrap_or(false)
}

/// Every waiting entry, oldest first, and the files that are not entries.
fn pending(ws: &Workspace) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    let Ok(list) = std::fs::read_dir(dir(ws)) else { return (entries, unreadable) };
    for item in list.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") || !item.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match load(&item.path()) {
            Some(Ok(entry)) => entries.push(entry),
            Some(Err(why)) => unreadable.push(format!("{}: {why}", ws.label(&item.path()))),
            None => {}
        }
    }
    entries.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.event_id.cmp(&b.event_id)));
    (entries, unreadable)
}

/// One delivery step at a time in a process: the daemon's timer and an engine pass never send
/// the same entry twice at once (the instance lock keeps other runners of the agent out).
static DELIVERING: Mutex<()> = Mutex::new(());

/// Sends the due entries, oldest first, for at most `budget` (an attempt started in time has
/// its own timeout). A channel that fails gets no other attempt in this step.
pub fn deliver(ws: &Workspace, secrets: &Secrets, budget: Duration) -> Vec<Delivery> {
    let Ok(_one_at_a_time) = DELIVERING.try_lock() else { return Vec::new() };
    let started = Instant::now();
    let (entries, unreadable) = pending(ws);
    for file in unreadable {
        tracing::warn!("the notification outbox holds a file that is not an entry: {file}");
    }
    let mut failed: HashSet<String> = HashSet::new();
    let mut done = Vec::new();
    for mut entry in entries {
        if started.elapsed() >= budget {
            break;
        }
        let now = now_ms();
        if parse_stamp(&entry.next_attempt_at).is_some_and(|due| due > now) || failed.contains(&entry.channel) {
            continue;
        }
        let Some(channel) = ws.config.notifications.iter().find(|c| c.name == entry.channel) else { continue };
        let result = super::send::send(ws, secrets, channel, &entry);
        entry.attempts = entry.attempts.saturating_add(1);
        let now = now_ms();
        let (accepted, error) = match result {
            Ok(()) => {
                entry.delivered_at = Some(stamp(now));
                entry.last_error = None;
                entry.failing_since = None;
                let moved = write(ws, &sent_path(ws, &entry.event_id), &entry)
                    .and_then(|()| crate::workspace::write::remove_file(&ws.root, &pending_path(ws, &entry.event_id)));
                if let Err(e) = moved {
                    tracing::error!("cannot move the delivered notification {} to sent/: {e}", entry.event_id);
                }
                tracing::info!(
                    "notified {} of {} for {} (event {}, attempt {})",
                    entry.channel,
                    entry.event,
                    entry.notice.task_id,
                    entry.event_id,
                    entry.attempts
                );
                (true, None)
            }
            Err(why) => {
                let why = secrets.mask(&why);
                entry.failing_since.get_or_insert_with(|| stamp(now));
                entry.last_error = Some(why.clone());
                let wait = channel.retry.after(entry.attempts);
                entry.next_attempt_at = stamp(now.saturating_add(wait.as_millis() as i64));
                if let Err(e) = write(ws, &pending_path(ws, &entry.event_id), &entry) {
                    tracing::error!("cannot record the failed notification {}: {e}", entry.event_id);
                }
                tracing::warn!(
                    "cannot notify {} of {} (event {}, attempt {}): {why}; next attempt in {wait:?}",
                    entry.channel,
                    entry.event,
                    entry.event_id,
                    entry.attempts
                );
                failed.insert(entry.channel.clone());
                (false, Some(why))
            }
        };
        done.push(Delivery {
            channel: entry.channel.clone(),
            event: entry.event,
            accepted,
            error,
            cause: entry.cause.clone(),
            request_key: entry.request_key.clone(),
        });
    }
    done
}

/// The outbox as `status` shows it.
pub fn status(ws: &Workspace) -> OutboxStatus {
    let (entries, unreadable) = pending(ws);
    let mut channels: BTreeMap<String, ChannelHealth> = BTreeMap::new();
    for entry in &entries {
        let health = channels.entry(entry.channel.clone()).or_insert_with(|| ChannelHealth {
            channel: entry.channel.clone(),
            pending: 0,
            failing_since: None,
            last_error: None,
            unconfigured: !ws.config.notifications.iter().any(|c| c.name == entry.channel),
        });
        health.pending += 1;
        if let Some(since) = &entry.failing_since
            && health.failing_since.as_ref().is_none_or(|known| since < known)
        {
            health.failing_since = Some(since.clone());
        }
        if entry.last_error.is_some() {
            health.last_error.clone_from(&entry.last_error);
        }
    }
    OutboxStatus { pending: entries.len(), channels: channels.into_values().collect(), unreadable }
}

/// The **Contacts Notified** line of an escalation raised by `cause`, for `channels` (those
/// that take escalations): each with whether it accepted the escalation (and when), or that it
/// is queued, and since when its deliveries fail; `none configured` without channels.
pub fn contacts_line(ws: &Workspace, cause: &str, channels: &[String]) -> String {
    if channels.is_empty() {
        return "none configured".to_owned();
    }
    let failing_since = |channel: &str| {
        pending(ws).0.into_iter().filter(|e| e.channel == channel).filter_map(|e| e.failing_since).min()
    };
    let parts: Vec<String> = channels
        .iter()
        .map(|channel| {
            let id = super::event_id(cause, Event::Escalation, channel);
            if let Some(Ok(sent)) = load(&sent_path(ws, &id)) {
                return format!("{channel} (accepted {})", short(sent.delivered_at.as_deref().unwrap_or("")));
            }
            match failing_since(channel) {
                Some(since) => format!("{channel} (queued; delivery failing since {})", short(&since)),
                None => format!("{channel} (queued)"),
            }
        })
        .collect();
    parts.join(", ")
}

/// A stamp to the second, as every other time opsflow writes for people.
fn short(stamp: &str) -> String {
    match parse_stamp(stamp) {
        Some(ms) => crate::time::rfc3339(ms.div_euclid(1000)),
        None => stamp.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_keep_milliseconds_and_read_back() {
        let ms = 1_700_000_000_123;
        let text = stamp(ms);
        assert_eq!(text, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_stamp(&text), Some(ms));
        assert_eq!(short(&text), "2023-11-14T22:13:20Z");
    }
}
