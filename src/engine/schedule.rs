//! When a deploy may start, once its gates pass: the environment is not locked (`opsflow
//! lock`), its deploy window is open, and its wait timer has run out since the approval.
//!
//! Each is a [`Check`] with [`CheckId::Schedule`], decided from the time of the pass
//! (`Options::clock`, read once per pass) and opsflow's own runtime files, so the same pass
//! gives the same answer everywhere. A deploy held only by them waits (`blocked`, exit 3) with
//! a reason that says until when, writes no human request (only time or an unlock clears it),
//! and records a `waited` event in the environment's record; the first instant one of them
//! may clear is handed to the daemon ([`Summary::wake`]), which reconciles then.

#[allow(unused_imports)]
use super::*;
use crate::environment::freeze::{self, TimerStart};
use crate::environment::window::WindowState;
use crate::environment::{Event, EventKind, ReleaseRef};

/// The names of the checks, which `status` and `next` recognise in a blocked reason.
pub const LOCK_CHECK: &str = "environment lock";
pub const WINDOW_CHECK: &str = "deploy window";
pub const TIMER_CHECK: &str = "wait timer";

/// What the approval says, for the wait timer.
pub(super) enum Approved {
    /// The environment needs an approval and has none yet (or it was withdrawn).
    Not,
    /// Approved by this person (or a ticked box).
    By(Option<String>),
    /// The environment needs no approval.
    NotNeeded,
}

impl<'w> Engine<'w> {
    /// The lock, window and wait timer checks of a deploy of `release` to `env`; `others_pass`
    /// says whether every other check passed (a wait timer without an approval starts then).
    pub(super) fn schedule_checks(
        &self,
        pass: &mut Pass,
        env: &deploy::EnvConfig,
        release: &Release,
        approved: Approved,
        others_pass: bool,
    ) -> Vec<Check> {
        let now = pass.now;
        let name = env.name.as_str();
        let runtime = self.ws.config.paths.runtime.as_str();
        let mut checks = Vec::new();
        let check = |label: &str, passed: bool, detail: String| {
            Check::new("schedule", label, passed, detail).with_id(CheckId::Schedule)
        };
        match freeze::load_lock(&self.ws.root, runtime, name) {
            Ok(None) => {}
            Ok(Some(lock)) => checks.push(check(
                LOCK_CHECK,
                false,
                format!("{name} is {}; `opsflow unlock {name}` lets deploys start again", lock.describe()),
            )),
            // A lock that cannot be read holds the deploy: it may be a freeze.
            Err(why) => checks.push(check(LOCK_CHECK, false, why.to_string())),
        }
        if let Some(window) = &env.deploy_window {
            let open = window.is_open(now);
            if let WindowState::Closed { opens: Some(opens) } = window.state(now) {
                pass.wake_at(opens);
            }
            checks.push(check(WINDOW_CHECK, open, window.describe(now)));
        }
        if let Some(timer) = env.wait_timer {
            checks.push(self.wait_timer_check(pass, env, release, timer, approved, others_pass));
        }
        checks
    }

    /// The wait timer of a deploy: `timer` after opsflow first saw its approval (or saw it
    /// ready, without one). That first sight is kept in `<runtime>/wait-timers/<env>.json`; an
    /// approval withdrawn (held, rejected, edited back to pending) starts it again.
    fn wait_timer_check(
        &self,
        pass: &mut Pass,
        env: &deploy::EnvConfig,
        release: &Release,
        timer: std::time::Duration,
        approved: Approved,
        others_pass: bool,
    ) -> Check {
        let now = pass.now;
        let (name, runtime) = (env.name.as_str(), self.ws.config.paths.runtime.as_str());
        let length = crate::duration::format_duration(timer);
        let check = |passed: bool, detail: String| {
            Check::new("schedule", TIMER_CHECK, passed, detail).with_id(CheckId::Schedule)
        };
        let mut timers = match freeze::load_timers(&self.ws.root, runtime, name) {
            Ok(timers) => timers,
            Err(why) => return check(false, why.to_string()),
        };
        let label = release.label();
        let needed = !matches!(approved, Approved::NotNeeded);
        let (started, by) = match approved {
            Approved::Not => {
                if timers.remove(&label).is_some() && !self.options.dry_run {
                    self.save_timers(name, &timers);
                }
                return check(true, format!("{length} after the approval, counted from when opsflow sees it"));
            }
            Approved::NotNeeded if !others_pass && !timers.contains_key(&label) => {
                return check(true, format!("{length} after every other check passes"));
            }
            Approved::By(by) => (timers.get(&label).cloned(), by),
            Approved::NotNeeded => (timers.get(&label).cloned(), None),
        };
        let start = match started {
            Some(start) => start,
            None => {
                let start = TimerStart { since: crate::time::stamp(now), approved_by: by.clone() };
                timers.insert(label, start.clone());
                if !self.options.dry_run {
                    self.save_timers(name, &timers);
                }
                start
            }
        };
        let since: jiff::Timestamp = start.since.parse().unwrap_or(now);
        let until = since.checked_add(jiff::SignedDuration::try_from(timer).unwrap_or_default()).unwrap_or(since);
        let after = match &start.approved_by {
            Some(by) => format!("{length} after the approval by {by}, seen at {}", start.since),
            None if !needed => format!("{length} after it was ready at {}", start.since),
            None => format!("{length} after the approval, seen at {}", start.since),
        };
        if now >= until {
            check(true, format!("{after}: over since {}", crate::time::stamp(until)))
        } else {
            pass.wake_at(until);
            check(false, format!("{after}: waits until {}", crate::time::stamp(until)))
        }
    }

    fn save_timers(&self, environment: &str, timers: &std::collections::BTreeMap<String, TimerStart>) {
        if let Err(e) = freeze::save_timers(&self.ws.root, &self.ws.config.paths.runtime, environment, timers) {
            self.write_failed(e.to_string());
        }
    }

    /// Records in the environment's record that a deploy of `release` waits for its lock,
    /// window or timer, with the reason.
    pub(super) fn record_wait(&self, environment: &str, release: &Release, checks: &[Check]) {
        let waits: Vec<String> = checks
            .iter()
            .filter(|c| c.blocks() && c.id == CheckId::Schedule)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if waits.is_empty() {
            return;
        }
        let Ok(env) = self.ws.environment(environment) else { return };
        let reference = ReleaseRef::new(release.unit.clone(), release.version.as_str());
        let event = Event::new(EventKind::Waited, &reference, "", waits.join("; "));
        if let Err(e) = env.change_record(self.ws, |record| record.events.push(event)) {
            self.write_failed(e.to_string());
        }
    }
}
