//! The daemon behind `opsflow watch`: a watcher, a reconciler and an HTTP server under one
//! supervisor.
//!
//! Each worker is an async task with its context, its channels and a `CancellationToken`;
//! [`run`] alone decides when the program ends. The reconciler is level-triggered: events
//! only say "look again", every reconcile reads what it needs, and a periodic resync every
//! `devops.poll_interval` catches anything the watcher missed. Reconciles run the same engine
//! as `opsflow run`, on a blocking thread.
//!
//! A watcher that fails is started again with a backoff ([`supervise_watcher`]); meanwhile
//! `/healthz` reports it and the resync is the polling that finds changes.
//!
//! Shutdown: the token is cancelled, the engine stops starting nodes, a running node gets
//! `devops.shutdown_grace` to finish, after which its commands are killed (a symlink switch is
//! atomic, so no environment is left half-switched); then the locks are released.

pub mod git_busy;
pub mod http;
pub mod metrics;
pub mod watcher;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Exit;
use crate::config::Devops;
use crate::engine::{Cancel, Engine, Options, Summary};
use crate::render::{Fingerprint, Renderer};
use crate::workspace::Workspace;
use metrics::Metrics;
use watcher::Hint;

/// What `opsflow watch` was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub agent: Option<String>,
    pub http: Option<SocketAddr>,
}

/// Handles a test or the command line can use while the daemon runs.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    pub metrics: Arc<Metrics>,
    /// The address the HTTP server bound (resolves port 0).
    pub http_address: Arc<std::sync::OnceLock<SocketAddr>>,
}

/// Runs the daemon until `shutdown` completes. Startup problems (an invalid config, another
/// runner holding the instance lock) are errors; everything after startup is reported and
/// survived.
pub async fn run(settings: Settings, handles: Handles, shutdown: impl Future<Output = ()>) -> anyhow::Result<Exit> {
    large_buffers_outside_the_heap();
    let ws = Workspace::open(&settings.dir, settings.config_file.as_deref(), settings.agent.as_deref())?;
    if !ws.config_problems.is_empty() {
        for problem in &ws.config_problems {
            eprintln!("{problem}");
        }
        let invalid = crate::config::ConfigError::Invalid { file: ws.config_label, count: ws.config_problems.len() };
        return Err(anyhow::Error::new(invalid).context("the daemon does not start on an invalid config"));
    }
    let lock = crate::instance::acquire(&ws)?;
    let sync = crate::sync::GitSync::open(&ws)?.map(Arc::new);
    if let Some(sync) = &sync {
        let _ = handles.metrics.git_sync.set(Arc::clone(sync));
    }
    let grace = ws.config.devops.shutdown_grace;
    let cancel = CancellationToken::new();
    let engine_cancel = Cancel::default();
    let metrics = Arc::clone(&handles.metrics);
    metrics.set_alive(true);

    let (hint_tx, hint_rx) = mpsc::channel(256);
    let watcher = tokio::spawn(supervise_watcher(
        ws.root.clone(),
        ws.config.paths.runtime.clone(),
        hint_tx,
        Arc::clone(&metrics),
        cancel.clone(),
    ));
    let http = match settings.http {
        Some(address) => {
            let listener = http::bind(address).await?;
            let bound = listener.local_addr()?;
            let _ = handles.http_address.set(bound);
            tracing::info!("serving /healthz and /metrics on http://{bound}");
            if !bound.ip().is_loopback() {
                tracing::warn!(
                    "--http {bound} is not a loopback address: /healthz and /metrics have no authentication, so \
                     anyone who can reach {bound} reads the daemon's health, task counts and deployments; serve \
                     them on 127.0.0.1 (or ::1) and put a proxy with authentication in front if others need them"
                );
            }
            Some(tokio::spawn(http::serve(listener, Arc::clone(&metrics), cancel.clone())))
        }
        None => None,
    };
    let (workspace_tx, workspace_rx) = tokio::sync::watch::channel(None);
    let notifier = tokio::spawn(notify_loop(workspace_rx, Arc::clone(&metrics), cancel.clone()));
    let mut reconciler = tokio::spawn(reconcile_loop(
        settings,
        ws,
        hint_rx,
        Arc::clone(&metrics),
        cancel.clone(),
        engine_cancel.clone(),
        sync,
        workspace_tx,
    ));

    let mut exit = Exit::Ok;
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        ended = &mut reconciler => {
            // The loop only ends on its own when something is badly wrong.
            tracing::error!("the reconcile loop ended: {ended:?}");
            exit = Exit::Invalid;
        }
    }
    cancel.cancel();
    engine_cancel.stop.store(true, Ordering::SeqCst);
    if !reconciler.is_finished() && tokio::time::timeout(grace, &mut reconciler).await.is_err() {
        tracing::warn!("the running step did not finish within the grace period of {grace:?}; stopping it");
        engine_cancel.abort.store(true, Ordering::SeqCst);
        let _ = reconciler.await;
    }
    metrics.set_alive(false);
    if let Err(e) = notifier.await {
        tracing::error!("the notification timer panicked: {e}");
    }
    if let Err(e) = watcher.await {
        tracing::error!("the file watcher's supervisor panicked: {e}");
    }
    if let Some(http) = http {
        let _ = http.await;
    }
    drop(lock);
    Ok(exit)
}

/// The first wait before a failed file watcher is started again; each failure in a row
/// doubles it, up to [`WATCHER_BACKOFF_MAX`].
const WATCHER_BACKOFF_MIN: Duration = Duration::from_millis(100);
const WATCHER_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A watcher that ran this long before it failed starts the backoff over.
const WATCHER_STEADY: Duration = Duration::from_secs(60);

/// Runs the file watcher until `cancel`, and starts it again whenever it fails, with a
/// backoff. While it is down `/healthz` says so (503, with the reason), and the reconcile loop
/// still reconciles every `devops.poll_interval`; the watcher that starts again asks for a
/// full rescan. `hints` stays open all along, so the reconcile loop never sees it close.
async fn supervise_watcher(
    root: PathBuf,
    runtime: String,
    hints: mpsc::Sender<Hint>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut backoff = WATCHER_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let ended =
            watcher::run(root.clone(), runtime.clone(), hints.clone(), Arc::clone(&metrics), cancel.clone()).await;
        if cancel.is_cancelled() {
            return;
        }
        let reason = match ended {
            Ok(()) => watcher::WatcherError::StreamEnded.to_string(),
            Err(e) => e.to_string(),
        };
        metrics.watcher_errors.inc();
        if started.elapsed() >= WATCHER_STEADY {
            backoff = WATCHER_BACKOFF_MIN;
        }
        // Logged as an error when it fails, then quieter while it cannot start again.
        if metrics.watcher_is_down() {
            tracing::warn!("the file watcher did not start again: {reason}; next attempt in {backoff:?}");
        } else {
            tracing::error!(
                "the file watcher failed: {reason}; starting it again in {backoff:?}, and reconciling every devops.poll_interval meanwhile"
            );
        }
        metrics.watcher_failed(&reason);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        metrics.watcher_restarts.inc();
        backoff = backoff.saturating_mul(2).min(WATCHER_BACKOFF_MAX);
    }
}

/// How long a reconcile may run, or the loop go without one, before `/healthz` calls the
/// daemon stalled: three poll intervals, plus the monitoring period and the verification
/// timeout, which a reconcile that deploys to production legitimately spends.
fn stall_limit(devops: &Devops) -> Duration {
    devops
        .poll_interval
        .saturating_mul(3)
        .saturating_add(devops.monitoring_period)
        .saturating_add(devops.verification_timeout)
}

/// The longest a stream of changes can postpone a reconcile, in debounce periods (500 ms
/// with the default debounce of 50 ms).
const MAX_DEBOUNCE_PERIODS: u32 = 10;

/// Waits while git rewrites the working tree (see [`git_busy`]), checking every `period`, for
/// at most [`git_busy::MAX_WAIT`]. A lock it gave up on once (`stale`, by its modification
/// time) is not waited for again.
async fn wait_for_git(
    lock: Option<&Path>,
    stale: &mut Option<std::time::SystemTime>,
    period: Duration,
    cancel: &CancellationToken,
) {
    let give_up = tokio::time::Instant::now() + git_busy::MAX_WAIT;
    let mut said = false;
    while let Some(since) = git_busy::held_since(lock) {
        if *stale == Some(since) {
            return;
        }
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!(
                "{} has existed for over {:?}: reconciling anyway (a git that crashed leaves it behind; remove it if no git runs)",
                lock.unwrap_or(Path::new("")).display(),
                git_busy::MAX_WAIT
            );
            *stale = Some(since);
            return;
        }
        if !said {
            tracing::debug!("git is writing the working tree: waiting for it to finish");
            said = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period.max(Duration::from_millis(10))) => {}
        }
    }
}

/// Waits for hints or the resync timer, debounces, and reconciles; hands each reconcile's
/// workspace to the notification timer (`workspace_tx`).
#[allow(clippy::too_many_arguments)]
async fn reconcile_loop(
    settings: Settings,
    ws: Workspace,
    mut hints: mpsc::Receiver<Hint>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    engine_cancel: Cancel,
    sync: Option<Arc<crate::sync::GitSync>>,
    workspace_tx: tokio::sync::watch::Sender<Option<Arc<Workspace>>>,
) {
    let mut current = Arc::new(ws);
    let mut templates: Option<Templates> = None;
    // What each pass leaves of tasks.json for the next one (`validate::TaskIndex`).
    let task_index = Arc::new(std::sync::Mutex::new(crate::validate::TaskIndex::default()));
    let mut reconciles: u64 = 0;
    let mut reported_config: Option<String> = None;
    // Each task's block is logged when it starts or its reason changes, not on every reconcile.
    let mut reported_blocks: std::collections::HashMap<String, String> = Default::default();
    // The first reconcile happens at once: work may be waiting from before the start.
    let mut due = true;
    let mut retry_after_settle = false;
    let git_lock = git_busy::index_lock(&current.root);
    let mut stale_git_lock = None;
    // When a deploy that waits for its window or wait timer may start: a reconcile then.
    let mut wake: Option<jiff::Timestamp> = None;
    loop {
        let poll = current.config.devops.poll_interval;
        let debounce = current.config.devops.debounce;
        // With git sync, another runner's push makes no local file event: the remote is
        // fetched (by a reconcile) every `git.fetch_interval`.
        let poll = match &sync {
            Some(_) => poll.min(current.config.git.fetch_every()),
            None => poll,
        };
        if !due {
            let wait = if retry_after_settle { debounce } else { poll };
            let wait = match wake {
                Some(at) => wait.min(until(at, crate::time::Clock::from_env().now())),
                None => wait,
            };
            // The memory kept for the next large read goes once the daemon has been idle for
            // a moment (`workspace::read::recycle`): idle, it holds no copy of any file.
            let keep_spare = crate::workspace::read::spare_held().then_some(SPARE_KEEP).filter(|keep| *keep < wait);
            tokio::select! {
                _ = cancel.cancelled() => return,
                hint = hints.recv() => match hint {
                    Some(hint) => tracing::debug!("hint: {hint:?}"),
                    None => return,
                },
                _ = tokio::time::sleep(keep_spare.unwrap_or(wait)), if keep_spare.is_some() => {
                    crate::workspace::read::release_spare();
                    continue;
                }
                _ = tokio::time::sleep(wait) => tracing::debug!("{}", if retry_after_settle { "re-reading after the files settled" } else { "periodic resync" }),
            }
            // Debounce: wait until nothing has changed for `debounce`, so a file written in
            // several steps, or a checkout of many files, is read once, settled. But for no
            // more than MAX_DEBOUNCE_PERIODS periods: a file written all the time (an app's
            // log, a dev server's output) must not postpone every reconcile for as long as
            // it is written.
            let settle_by = tokio::time::Instant::now() + debounce.saturating_mul(MAX_DEBOUNCE_PERIODS);
            loop {
                let quiet_until = (tokio::time::Instant::now() + debounce).min(settle_by);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = tokio::time::timeout_at(quiet_until, hints.recv()) => match next {
                        Ok(Some(_)) if tokio::time::Instant::now() < settle_by => continue,
                        Ok(Some(_)) => break,
                        Ok(None) => return,
                        Err(_) => break,
                    },
                }
            }
        }
        due = false;
        wait_for_git(git_lock.as_deref(), &mut stale_git_lock, debounce, &cancel).await;
        if cancel.is_cancelled() {
            return;
        }
        // The reconcile about to start reads every file, so the hints queued until now (the
        // files git rewrote while the loop waited for it, above all) are covered by it. Left
        // queued, they would wake a second reconcile right after this one, with nothing new to
        // read, that could overlap the person's next git command and read half of its work.
        while hints.try_recv().is_ok() {}
        metrics.set_stall_limit(stall_limit(&current.config.devops));
        metrics.reconcile_started();
        let started = Instant::now();
        let job = {
            let settings = settings.clone();
            let previous = Arc::clone(&current);
            let engine_cancel = engine_cancel.clone();
            let templates = templates.take();
            let first = reconciles == 0;
            // Each node is counted and logged as it ends, not when the reconcile does.
            let counter = Arc::clone(&metrics);
            let progress = crate::engine::Progress(Arc::new(move |ran: &crate::engine::Ran| {
                tracing::info!("{} {} {}: {}", ran.task, ran.node, ran.outcome, ran.summary);
                counter.count_ran(ran);
            }));
            let sync = sync.clone();
            let task_index = Arc::clone(&task_index);
            tokio::task::spawn_blocking(move || {
                reconcile_once(&settings, previous, templates, engine_cancel, first, sync, progress, task_index)
            })
        };
        let Ok(outcome) = job.await else {
            tracing::error!("a reconcile panicked");
            metrics.note_problem("a reconcile panicked");
            metrics.record(&Summary::default(), started.elapsed().as_secs_f64(), BTreeMap::new(), false);
            continue;
        };
        let ok = outcome.summary.problems.is_empty()
            && outcome.summary.write_errors.is_empty()
            && outcome.config_problem.is_none();
        if let Some(problem) = outcome
            .config_problem
            .clone()
            .or_else(|| outcome.summary.write_errors.first().cloned())
            .or_else(|| outcome.summary.problems.first().map(ToString::to_string))
        {
            metrics.note_problem(&problem);
        }
        if let Some(problem) = &outcome.config_problem {
            if reported_config.as_ref() != Some(problem) {
                tracing::error!("{problem}; the last good config stays in force");
                reported_config = Some(problem.clone());
            }
        } else {
            reported_config = None;
        }
        for problem in &outcome.summary.problems {
            tracing::warn!("{problem}");
        }
        for ran in &outcome.summary.ran {
            reported_blocks.remove(&ran.task);
        }
        for blocked in &outcome.summary.blocked {
            if reported_blocks.get(&blocked.task) != Some(&blocked.reason) {
                tracing::info!("{} {} blocked: {}", blocked.task, blocked.node, blocked.reason);
                reported_blocks.insert(blocked.task.clone(), blocked.reason.clone());
            }
        }
        // A task list or state that cannot be read, or a record that cannot be written, stops
        // all work: `/healthz` says so at once.
        let (tasks_file, state_file) = (&current.config.paths.tasks, &current.config.paths.state);
        let unreconcilable = outcome.summary.write_errors.first().cloned().or_else(|| {
            outcome
                .summary
                .problems
                .iter()
                .find(|d| {
                    (&d.file == tasks_file || &d.file == state_file)
                        && d.pointer.as_deref().is_none_or(|p| p.is_empty() || p == "/tasks")
                })
                .map(ToString::to_string)
        });
        metrics.set_unreconcilable(unreconcilable);
        // A file that is still being written may look invalid; read it again once it settles.
        retry_after_settle = !ok && !retry_after_settle;
        metrics.record(&outcome.summary, started.elapsed().as_secs_f64(), outcome.tasks_by_status, ok);
        metrics.count_deliveries(&outcome.summary.deliveries, &outcome.outbox);
        // Work was left when the reconcile reached its budget: the next one starts at once.
        due = outcome.summary.more;
        wake = outcome.summary.wake;
        if let Some(at) = wake {
            tracing::debug!("a waiting deploy may start at {}: reconciling then", crate::time::stamp(at));
        }
        current = outcome.workspace;
        // The notification timer delivers with the config the reconciles use.
        workspace_tx.send_replace(Some(Arc::clone(&current)));
        templates = outcome.templates;
        reconciles += 1;
        release_freed_memory();
    }
}

/// How long to sleep until `at`, a little past it: the reconcile then sees the window open or
/// the timer over, never a moment early.
fn until(at: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    const PAST: Duration = Duration::from_millis(50);
    let left = Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO);
    left + PAST
}

/// How often the daemon looks for notifications whose next attempt is due, between reconciles.
const NOTIFY_TICK: Duration = Duration::from_millis(500);

/// The daemon's notification timer: every [`NOTIFY_TICK`], sends what is due in the outbox
/// (retries above all; a reconcile sends what it raised at the end of each pass), on a
/// blocking thread, with the workspace of the last reconcile. A step that a reconcile's
/// delivery is running already is skipped (see `notify::outbox::deliver`).
async fn notify_loop(
    mut workspace: tokio::sync::watch::Receiver<Option<Arc<Workspace>>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(NOTIFY_TICK) => {}
        }
        let Some(ws) = workspace.borrow_and_update().clone() else { continue };
        if ws.config.notifications.is_empty() {
            continue;
        }
        let counter = Arc::clone(&metrics);
        let job = tokio::task::spawn_blocking(move || {
            let secrets = crate::exec::secrets::Secrets::from_env(&ws.config.secrets);
            let done = crate::notify::deliver_due(&ws, &secrets);
            if !done.is_empty() {
                counter.count_deliveries(&done, &crate::notify::outbox::status(&ws));
            }
        });
        if let Err(e) = job.await {
            tracing::error!("a notification delivery panicked: {e}");
        }
    }
}

/// A reconcile allocates several times the size of `tasks.json` and frees it all; glibc keeps
/// freed memory for reuse, so without this an idle daemon would hold the peak of its last
/// reconcile.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps glibc from raising its mmap threshold: by default, once a mapped block is freed, the
/// threshold grows to that block's size (up to 32 MiB), so that the next copy of a 27 MB
/// `tasks.json` comes from the heap, where what is freed around it stays in the process. With
/// a fixed threshold every read of a large file is a mapping of its own, given back to the
/// kernel when the pass drops it: a daemon's idle RSS does not keep the largest file it read.
fn large_buffers_outside_the_heap() {
    // The size from which glibc gives an allocation its own mapping: its default, 128 KiB.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; setting the threshold is always allowed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Templates compiled by an earlier reconcile, and what they were compiled from.
type Templates = (Fingerprint, Arc<Renderer>);

struct Reconciled {
    summary: Summary,
    workspace: Arc<Workspace>,
    templates: Option<Templates>,
    config_problem: Option<String>,
    tasks_by_status: BTreeMap<String, u64>,
    outbox: crate::notify::OutboxStatus,
}

/// How long the daemon keeps the memory of its last large read once it is idle.
const SPARE_KEEP: Duration = Duration::from_secs(2);

/// One reconcile with the latest config (or the last good one) and the same engine as `run`.
/// How long one reconcile may keep running nodes before it returns to the loop.
const RECONCILE_BUDGET: Duration = Duration::from_secs(10);

#[allow(clippy::too_many_arguments)]
fn reconcile_once(
    settings: &Settings,
    previous: Arc<Workspace>,
    templates: Option<Templates>,
    cancel: Cancel,
    first: bool,
    sync: Option<Arc<crate::sync::GitSync>>,
    progress: crate::engine::Progress,
    task_index: Arc<std::sync::Mutex<crate::validate::TaskIndex>>,
) -> Reconciled {
    let (workspace, config_problem) =
        match Workspace::open(&settings.dir, settings.config_file.as_deref(), settings.agent.as_deref()) {
            Ok(ws) if ws.config_problems.is_empty() => (Arc::new(ws), None),
            Ok(ws) => {
                let problems = ws.config_problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                (previous, Some(format!("{} is invalid: {problems}", ws.config_label)))
            }
            Err(e) => (previous, Some(format!("cannot open the workspace: {e:#}"))),
        };
    // Compiling every template costs more than a reconcile with nothing to do: the compiled
    // ones are kept while the template files stay the same.
    let fingerprint = Fingerprint::of(&workspace);
    let renderer = match templates {
        Some((kept, renderer)) if kept == fingerprint => Ok(renderer),
        _ => Renderer::new(&workspace).map(Arc::new),
    };
    let (mut summary, templates) = match renderer {
        Ok(renderer) => {
            let templates = Some((fingerprint, Arc::clone(&renderer)));
            let options = Options {
                dry_run: false,
                cancel,
                skip_recovery: !first,
                sync,
                // A reconcile that keeps finding work returns now and then: health, shutdown
                // and the figures stay current, and the loop runs it again at once.
                budget: Some(RECONCILE_BUDGET),
                progress: Some(progress),
                clock: crate::time::Clock::from_env(),
                task_index,
            };
            match Engine::with_renderer(&workspace, options, renderer) {
                Ok(engine) => (engine.run(), templates),
                Err(problems) => (Summary { problems, ..Summary::default() }, templates),
            }
        }
        Err(problems) => (Summary { problems, ..Summary::default() }, None),
    };
    // The engine's last pass counted them, unless the file changed since; then it is read again.
    let tasks_by_status = match summary.owned_by_status.take() {
        Some(counts) => counts,
        None => owned_tasks_by_status(&workspace),
    };
    let outbox = crate::notify::outbox::status(&workspace);
    Reconciled { summary, workspace, templates, config_problem, tasks_by_status, outbox }
}

fn owned_tasks_by_status(ws: &Workspace) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let Ok(Some(text)) = ws.read_text(&ws.config.paths.tasks) else { return counts };
    let owned = crate::store::tasks::scan_in(&text, &ws.task_selection(), |head| {
        crate::workflow::owns(&ws.config, head.agent.as_deref(), head.kind.as_deref())
    });
    if let Ok((_, heads)) = owned {
        for head in heads {
            *counts.entry(head.status.as_deref().unwrap_or("").to_owned()).or_default() += 1;
        }
    }
    counts
}
