//! Integration tests: the `opsflow` binary run as users and other agents run it.
//!
//! Every test builds a fresh temporary workspace with [`util::Workspace`], runs the real
//! binary with `-C <dir>`, and asserts on what a user sees: exit codes, stdout, stderr and
//! the bytes of the files. One binary holds every module, so the crate is compiled once.
//!
//! - [`store`]: byte-preserving edits of `tasks.json`, ownership filters, refused edits.
//! - [`concurrency`]: many writers at once, and a writer that ignores the lock.
//! - [`crash`]: `kill -9` of a writer at random moments.
//! - [`bad_input`]: a corpus of broken workspace files and the diagnostic each yields.
//! - [`hostile`]: symlinked folders, escaping paths, secrets in odd shapes, endless output lines.
//! - [`cli`]: `init`, `status --json` and `validate` on the sample workspace.
//! - [`first_hour`]: the wrong directory, `init` in a git repository, a first release, help
//!   text, `tasks add --owner`, the graph's rollback edge.
//! - [`tls`]: HTTPS checks and metrics against a real rustls server with a generated CA.
//! - [`hostile_input`]: files written to hurt a reader, run through every command under a memory limit.
//! - [`scanner_property`]: the span scanner and its splices against `serde_json`, on generated text.
//! - [`merge`]: the git merge driver under real `git merge` and `git rebase`, its setup, and
//!   `tasks release`.

mod bad_input;
mod cli;
mod concurrency;
mod crash;
mod daemon;
mod docs;
mod engine;
mod fidelity;
mod first_hour;
mod hostile;
mod hostile_input;
mod life;
mod merge;
mod metrics;
mod releases;
mod rollout;
mod scanner_property;
mod store;
mod tls;
mod util;
