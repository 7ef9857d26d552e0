//! The engine: find owned work, check gates, run nodes, record everything.

pub mod artifacts;
pub mod deploy;
pub mod gates;
pub mod nodes;
pub mod record;
