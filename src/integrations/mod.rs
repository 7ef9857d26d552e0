//! Files of other agent frameworks that opsflow reads where it is dropped into a repository
//! whose agents already coordinate through them (docs/integrations.md): BMAD's QA gate files
//! (`bmad`), a QA verdict beside opsflow's own QA reports, and beads' issue list (`beads`),
//! a read-only source of the status of work a task depends on. opsflow never writes either.

pub mod beads;
pub mod bmad;
