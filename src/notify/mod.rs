//! Notifications: the events a deployment raises (an approval waiting, a deploy started,
//! deployed, failed, rolled back, a paused rollout, an escalation, a blocked task), sent to the
//! channels of `notifications` in `project-config.json`, at least once.
//!
//! The engine never sends anything where an event happens: it puts one entry per event and
//! channel in the outbox ([`outbox`], `<runtime>/outbox/<event-id>.json`, written atomically),
//! and a delivery step ([`deliver_due`]) sends what is due at the start of a run, after each
//! pass and on the daemon's timer, within a time budget, each attempt with a short timeout. So a
//! receiver that is down or slow never holds or fails a deployment, and a runner killed between
//! the two leaves the entry for the next one. The event id is a digest of what raised the event
//! (the run, or the release and cause of a wait), the event and the channel: raised again on a
//! later pass it is the same id, and the outbox holds it once; the receiver gets it as the
//! `Idempotency-Key` header and the `event_id` field, to drop a repeat of a delivery whose answer
//! was lost.
//!
//! A channel is a `webhook` (a JSON body, or Slack's `text` and `blocks`) or a `command` (the
//! event in `OPSFLOW_*` variables, the JSON body on stdin), both sent through `exec`. Secret
//! values (a header's, a URL's) come from environment variables named in the config, and are
//! added to the secrets every log, report and status masks.

pub mod outbox;
mod send;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::duration_text;
use crate::exec::secrets::Secrets;
use crate::workspace::Workspace;
pub use outbox::{ChannelHealth, Delivery, OutboxStatus};

/// How long one attempt may take unless a channel sets its own `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait after a first failed attempt (`retry.initial`).
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(10);
/// The longest wait between attempts (`retry.max`).
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(10 * 60);
/// The most time one delivery step spends starting attempts: an attempt started before it ends
/// still has its own timeout, so a step lasts at most this plus one timeout.
pub const DELIVERY_BUDGET: Duration = Duration::from_secs(5);

/// What happened, as a channel's `events` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    ApprovalWaiting,
    DeployStarted,
    Deployed,
    Failed,
    RolledBack,
    Paused,
    Escalation,
    Blocked,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::ApprovalWaiting,
        Event::DeployStarted,
        Event::Deployed,
        Event::Failed,
        Event::RolledBack,
        Event::Paused,
        Event::Escalation,
        Event::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::ApprovalWaiting => "approval_waiting",
            Event::DeployStarted => "deploy_started",
            Event::Deployed => "deployed",
            Event::Failed => "failed",
            Event::RolledBack => "rolled_back",
            Event::Paused => "paused",
            Event::Escalation => "escalation",
            Event::Blocked => "blocked",
        }
    }

    /// A short headline for a chat message.
    fn headline(self) -> &'static str {
        match self {
            Event::ApprovalWaiting => "Approval waiting",
            Event::DeployStarted => "Deploy started",
            Event::Deployed => "Deployed",
            Event::Failed => "Failed",
            Event::RolledBack => "Rolled back",
            Event::Paused => "Rollout paused",
            Event::Escalation => "Escalation",
            Event::Blocked => "Blocked",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value read from an environment variable when a notification is sent, never written down:
/// `{"env": "HOOK_TOKEN", "prefix": "Bearer "}`.
#[derive(Debug, Clone, Deserialize)]
pub struct FromEnv {
    pub env: String,
    #[serde(default)]
    pub prefix: String,
}

impl FromEnv {
    fn resolve(&self) -> Result<String, String> {
        match std::env::var(&self.env) {
            Ok(value) if !value.is_empty() => Ok(format!("{}{value}", self.prefix)),
            _ => Err(format!("the environment variable {} is not set", self.env)),
        }
    }
}

/// A webhook's URL: written in the config, or read from an environment variable (a Slack
/// incoming webhook's URL is its secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Url {
    Plain(String),
    Env(FromEnv),
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The notice as JSON ([`Notice`]).
    #[default]
    Json,
    /// Slack's incoming-webhook payload: `text` and `blocks`.
    Slack,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub url: Url,
    #[serde(default)]
    pub headers: BTreeMap<String, FromEnv>,
    #[serde(default)]
    pub format: Format,
    /// Trust only this PEM file's CAs (relative to the workspace).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// A command channel: `sh -c RUN` in the workspace, with its own timeout.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CommandSpec {
    Line(String),
    Full {
        run: String,
        #[serde(default, deserialize_with = "duration_text::option::deserialize")]
        timeout: Option<Duration>,
        #[serde(default)]
        cwd: Option<String>,
    },
}

/// Where a channel sends: a closed set, so a new kind is a variant every match must handle.
#[derive(Debug, Clone)]
pub enum Target {
    Webhook(Webhook),
    Command(CommandSpec),
}

/// The backoff of a channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Retry {
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub initial: Duration,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { initial: DEFAULT_RETRY_INITIAL, max: DEFAULT_RETRY_MAX }
    }
}

impl Retry {
    /// The wait after the `attempts`-th failed attempt: `initial`, doubled each time, at most `max`.
    pub fn after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max.max(self.initial))
    }
}

/// One entry of `notifications`.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "ChannelSpec")]
pub struct Channel {
    pub name: String,
    pub events: Vec<Event>,
    pub target: Target,
    pub base_url: Option<String>,
    pub timeout: Duration,
    pub retry: Retry,
}

/// A channel as the file writes it; the schema has checked that exactly one of `webhook` and
/// `command` is there.
#[derive(Debug, Clone, Deserialize)]
struct ChannelSpec {
    name: String,
    #[serde(default)]
    events: Option<Vec<Event>>,
    #[serde(default)]
    webhook: Option<Webhook>,
    #[serde(default)]
    command: Option<CommandSpec>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default, deserialize_with = "duration_text::option::deserialize")]
    timeout: Option<Duration>,
    #[serde(default)]
    retry: Retry,
}

impl From<ChannelSpec> for Channel {
    fn from(spec: ChannelSpec) -> Channel {
        let target = match (spec.webhook, spec.command) {
            (Some(webhook), _) => Target::Webhook(webhook),
            (None, Some(command)) => Target::Command(command),
            // Only a schema override lets this through: a command that says so when it runs.
            (None, None) => Target::Command(CommandSpec::Line(
                "echo 'this channel has neither `webhook` nor `command`' >&2; exit 2".into(),
            )),
        };
        Channel {
            name: spec.name,
            events: spec.events.unwrap_or_else(|| Event::ALL.to_vec()),
            target,
            base_url: spec.base_url,
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
            retry: spec.retry,
        }
    }
}

impl Channel {
    pub fn wants(&self, event: Event) -> bool {
        self.events.contains(&event)
    }

    /// The environment variables whose values this channel sends: secrets, masked everywhere.
    pub fn secret_names(&self) -> Vec<String> {
        match &self.target {
            Target::Webhook(hook) => {
                let mut names: Vec<String> = hook.headers.values().map(|h| h.env.clone()).collect();
                if let Url::Env(url) = &hook.url {
                    names.push(url.env.clone());
                }
                names
            }
            Target::Command(_) => Vec::new(),
        }
    }
}

/// What a receiver is told of an event: the webhook's JSON body, a command's stdin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    pub event_id: String,
    pub event: String,
    pub channel: String,
    pub unit_id: String,
    pub version: String,
    pub environment: String,
    pub task_id: String,
    pub run_id: String,
    pub message: String,
    /// The file a person edits to answer (an approval request, an R17, `human-requests.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The command that answers it (`opsflow approve UNIT VERSION`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `base_url` and the file, when the channel has a `base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub raised_at: String,
}

/// An event as the engine raises it: what, about which release, and what answers it.
#[derive(Debug, Clone, Default)]
pub struct Raised {
    pub unit_id: String,
    pub version: String,
    pub environment: String,
    pub task_id: String,
    pub run_id: String,
    pub message: String,
    pub file: Option<String>,
    pub command: Option<String>,
    /// The human request (its marker key) an escalation is about, so that its **Contacts
    /// Notified** line can follow the delivery.
    pub request_key: Option<String>,
}

/// The event id: 32 hex digits of the SHA-256 of what raised it (`cause`: a run id, or a
/// release and the cause of a wait), the event and the channel.
pub fn event_id(cause: &str, event: Event, channel: &str) -> String {
    crate::sha256::hex(format!("{cause}\n{event}\n{channel}").as_bytes())[..32].to_owned()
}

/// Puts `raised` in the outbox for every channel that wants `event`, unless it is there (or
/// was sent) already. Returns the channels it is queued for (or was), in the config's order.
/// Nothing is sent here: see [`deliver_due`].
pub fn enqueue(ws: &Workspace, secrets: &Secrets, event: Event, cause: &str, raised: &Raised) -> Vec<String> {
    let mut queued = Vec::new();
    for channel in ws.config.notifications.iter().filter(|c| c.wants(event)) {
        let id = event_id(cause, event, &channel.name);
        let link = match (&channel.base_url, &raised.file) {
            (Some(base), Some(file)) => Some(format!("{}/{file}", base.trim_end_matches('/'))),
            (Some(base), None) => Some(base.clone()),
            _ => None,
        };
        let notice = Notice {
            event_id: id.clone(),
            event: event.as_str().to_owned(),
            channel: channel.name.clone(),
            unit_id: raised.unit_id.clone(),
            version: raised.version.clone(),
            environment: raised.environment.clone(),
            task_id: raised.task_id.clone(),
            run_id: raised.run_id.clone(),
            message: secrets.mask(&raised.message),
            file: raised.file.clone(),
            command: raised.command.clone(),
            link,
            raised_at: crate::time::now_rfc3339(),
        };
        match outbox::put(ws, notice, raised.request_key.clone(), cause) {
            Ok(_) => queued.push(channel.name.clone()),
            Err(e) => tracing::error!("cannot queue the {event} notification for {}: {e}", channel.name),
        }
    }
    queued
}

/// The names of the channels that want `event`.
pub fn channels_for(ws: &Workspace, event: Event) -> Vec<String> {
    ws.config.notifications.iter().filter(|c| c.wants(event)).map(|c| c.name.clone()).collect()
}

/// Sends what is due in the outbox, for at most [`DELIVERY_BUDGET`] (see [`outbox::deliver`]).
pub fn deliver_due(ws: &Workspace, secrets: &Secrets) -> Vec<Delivery> {
    if ws.config.notifications.is_empty() && !outbox::has_pending(ws) {
        return Vec::new();
    }
    let done = outbox::deliver(ws, secrets, DELIVERY_BUDGET);
    // An escalation's entry in human-requests.md says who accepted it, once they have.
    let channels = channels_for(ws, Event::Escalation);
    let mut updated = std::collections::HashSet::new();
    for delivery in &done {
        let Some(key) = &delivery.request_key else { continue };
        if !updated.insert((key.clone(), delivery.cause.clone())) {
            continue;
        }
        let line = outbox::contacts_line(ws, &delivery.cause, &channels);
        if let Err(e) = crate::engine::requests::set_contacts(ws, key, &line) {
            tracing::error!("cannot note who was notified in {}: {e}", ws.config.paths.human_requests);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_initial_up_to_max() {
        let retry = Retry { initial: Duration::from_secs(10), max: Duration::from_secs(60) };
        let waits: Vec<u64> = (1..=6).map(|n| retry.after(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        // A huge attempt count neither overflows nor goes past max.
        assert_eq!(retry.after(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn event_ids_are_stable_and_differ_by_event_and_channel() {
        let id = event_id("run-1", Event::Deployed, "ops");
        assert_eq!(id, event_id("run-1", Event::Deployed, "ops"));
        assert_eq!(id.len(), 32);
        assert_ne!(id, event_id("run-1", Event::Failed, "ops"));
        assert_ne!(id, event_id("run-1", Event::Deployed, "other"));
        assert_ne!(id, event_id("run-2", Event::Deployed, "ops"));
    }

    #[test]
    fn a_channel_reads_with_its_defaults() {
        let channel: Channel = serde_json::from_value(serde_json::json!({
            "name": "ops",
            "webhook": {"url": {"env": "HOOK_URL"}, "headers": {"Authorization": {"env": "HOOK_TOKEN", "prefix": "Bearer "}}}
        }))
        .unwrap();
        assert_eq!(channel.events, Event::ALL);
        assert_eq!(channel.timeout, DEFAULT_TIMEOUT);
        assert_eq!(channel.retry.initial, DEFAULT_RETRY_INITIAL);
        let mut names = channel.secret_names();
        names.sort();
        assert_eq!(names, ["HOOK_TOKEN", "HOOK_URL"]);
        let Target::Webhook(hook) = &channel.target else { panic!("a webhook") };
        assert_eq!(hook.format, Format::Json);
    }
}
