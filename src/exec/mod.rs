//! Execution: real processes for every step, checks, and the deployment providers.
//!
//! Architecture invariant: values from workflow files reach commands only as environment
//! variables (`OPSFLOW_*`), never spliced into a command string.

pub mod checks;
pub mod command;
pub mod deploy_lock;
pub mod http;
pub mod local;
pub mod metrics;
pub mod secrets;
