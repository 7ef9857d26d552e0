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
//! - [`cli`]: `init`, `status --json` and `validate` on the sample workspace.
//! - [`merge`]: the git merge driver under real `git merge` and `git rebase`, its setup, and
//!   `tasks release`.

mod bad_input;
mod cli;
mod concurrency;
mod crash;
mod daemon;
mod engine;
mod merge;
mod metrics;
mod rollout;
mod store;
mod util;
