//! What runs where. Each environment keeps one record of every change made to it
//! (`record.rs`); `status`, `history` and the deployment reports read what is live, what a
//! rollback would restore and where each release came from from that record, and nowhere
//! else (`view.rs`). When a deploy may start there besides its gates is `window.rs` (the
//! deploy window) and `freeze.rs` (a person's lock, and when each wait timer started).

pub mod freeze;
pub mod record;
pub mod view;
pub mod window;

pub use record::{CheckNote, Deployment, Event, EventKind, Provenance, Record, RecordError, ReleaseRef, Status};
