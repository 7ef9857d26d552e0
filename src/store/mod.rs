//! The store: locked, atomic, byte-preserving edits of `tasks.json` and `state.json`.
//!
//! [`json`] scans JSON as byte spans, [`edit`] splices changes into the original text,
//! [`tasks`] knows the task list's shapes ([`taskmaster`] the dialect of Task Master's), and [`file`] replaces files under a sidecar lock
//! with a re-check against writers that ignore it.
//!
//! Architecture invariant: only the store writes `tasks.json` and `state.json`.

pub mod edit;
pub mod file;
pub mod json;
pub mod state;
pub mod taskmaster;
pub mod tasks;

pub use file::{Outcome, StoreError};
