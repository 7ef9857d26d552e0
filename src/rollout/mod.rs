//! How an environment changes: deployments by provider and strategy (`deploy.rs`), the
//! analysis of measurements with Argo Rollouts' rules (`analysis.rs`), the rollout journal that
//! lets a paused rollout resume and an interrupted one be undone (`journal.rs`), the `local`
//! provider's releases and symlinks (`local.rs`), the `ssh` provider's releases on remote
//! hosts (`ssh.rs`) and the per-environment deploy lock (`deploy_lock.rs`).
//!
//! Architecture invariant: an environment changes only under its deploy lock, and only after
//! its journal says so.

pub mod analysis;
pub mod deploy;
pub mod deploy_lock;
pub mod journal;
pub mod local;
pub mod ssh;
