//! Execution: what every step uses: real processes, checks, HTTP, metrics, secrets.
//!
//! Architecture invariant: values from workflow files reach commands only as environment
//! variables (`OPSFLOW_*`), never spliced into a command string.

pub mod checks;
pub mod command;
pub mod http;
pub mod metrics;
pub mod secrets;
pub mod ssh;
