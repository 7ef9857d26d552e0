//! Integration tests: the `opsflow` binary run as users and other agents run it.
//!
//! Every test builds a fresh temporary workspace with [`util::Workspace`], runs the real
//! binary with `-C <dir>`, and asserts on what a user sees: exit codes, stdout, stderr and
//! the bytes of the files. One binary holds every module, so the crate is compiled once.
//!
//! - [`agents`]: agent nodes run real programs as agents; opsflow's verdict on their outputs,
//!   retries with diagnostics, timeouts, budgets, and the files they may not touch.
//! - [`store`]: byte-preserving edits of `tasks.json`, ownership filters, refused edits.
//! - [`concurrency`]: many writers at once, and a writer that ignores the lock.
//! - [`crash`]: `kill -9` of a writer waiting for the lock or writing its temporary file.
//! - [`bad_input`]: a corpus of broken workspace files and the diagnostic each yields.
//! - [`hostile`]: symlinked folders, escaping paths, secrets in odd shapes, endless output lines.
//! - [`cli`]: `init`, `status --json` and `validate` on the sample workspace.
//! - [`errors`]: bad durations refused at their key, write failures with their path, exit codes.
//! - [`engine`]: `opsflow run` end to end: gates, approvals, deployments, failures, hostile
//!   values, the audit log, exit codes and `run --json`.
//! - [`decisions`]: `approve`, `hold`, `promote`, `abort`, `retry` and `next` as a person drives
//!   them: the lines they write, every refusal, a decision left to a running daemon.
//! - [`daemon`]: `opsflow watch` in-process and as a process: debounce, live reload, the
//!   instance lock, signals, resync, `/healthz` and `/metrics`.
//! - [`metrics`]: metric sources (HTTP, commands, a real Prometheus) and the analysis.
//! - [`releases`]: many releases and units on one workspace, human rollbacks.
//! - [`rollout`]: rollout strategies (canary, rolling, blue-green), release integrity.
//! - [`life`]: a project's life, release after release.
//! - [`promises`]: what the README promises: audit digests, immutable versions, a
//!   hand-written CI file, release integrity, secrets, `status: hold`, exit codes.
//! - [`docs`]: every relative link in the docs resolves.
//! - [`fidelity`]: the seeds' own shapes of the files opsflow writes, and seed 000's failure rules.
//! - [`readiness`]: what a task waits on and why, the same in `status` and `run`; warnings
//!   for an agent that nearly names this runner and for statuses opsflow does not know.
//! - [`ssh`]: the `ssh` provider against real `sshd` servers on loopback ([`sshd`]): strategies
//!   over hosts, rollback, pruning, a changed host key, a host that goes away, hostile versions,
//!   two runners racing for one host's lock.
//! - [`util`]: the harness (workspace builder, runner, waits with deadlines).
//! - [`first_hour`]: the wrong directory, `init` in a git repository, a first release, help
//!   text, `tasks add --owner`, the graph's rollback edge.
//! - [`tls`]: HTTPS checks and metrics against a real rustls server with a generated CA.
//! - [`hostile_input`]: files written to hurt a reader, run through every command under a memory limit.
//! - [`scanner_property`]: the span scanner and its splices against `serde_json`, on generated text.
//! - [`gitwork`]: checkout, merge and stash under a running `opsflow watch`.
//! - [`sync`]: several runners on clones of one bare remote: claims pushed before nodes run,
//!   races, an unreachable remote, and four runners with 200 tasks.
//! - [`friendly`]: other stages' files, `human-requests.md` for people (code spans, resolved
//!   entries), visible warnings, the generated CI pipeline, errors a person can act on.
//! - [`integrations`]: BMAD QA gates as QA verdicts, beads issues as dependencies (read only),
//!   and lock files kept out of `git add -A` whatever the locked file is called.
//! - [`taskmaster`]: Task Master's tagged `tasks.json` (its own format, several tags, integer
//!   ids, subtasks), with a line diff after every command.
//! - [`notify`]: notification channels against a real HTTP receiver and real commands: once per
//!   event, retried with the same key, a killed runner's outbox, Slack, secrets, `/metrics`.
//! - [`merge`]: the git merge driver under real `git merge` and `git rebase`, its setup, and
//!   `tasks release`.

mod agents;
mod bad_input;
mod cli;
mod concurrency;
mod crash;
mod daemon;
mod decisions;
mod docs;
mod engine;
mod environments;
mod errors;
mod faults;
mod fidelity;
mod first_hour;
mod friendly;
mod gitwork;
mod hostile;
mod hostile_input;
mod identity;
mod integrations;
mod life;
mod merge;
mod metrics;
mod notify;
mod promises;
mod readiness;
mod records;
mod releases;
mod rollout;
mod scanner_property;
mod ssh;
mod sshd;
mod store;
mod sync;
mod taskmaster;
mod tidy;
mod tls;
mod util;
mod windows;
