//! The workflow: the built-in DevOps nodes and the rule that says which tasks this runner owns.

pub mod graph;

use crate::config::Config;

/// The ten nodes of the built-in DevOps workflow, in their natural order.
pub const BUILT_IN_NODES: [&str; 10] = [
    "Environment_Design",
    "Dev_Environment_Setup",
    "CI_Pipeline_Setup",
    "Staging_Environment_Setup",
    "Build_Release",
    "Deploy_To_Staging",
    "Deploy_To_Production",
    "Post_Deploy_Verification",
    "Rollback_Deployment",
    "Deployment_And_Continuous_Feedback",
];

/// Task types this runner may own.
pub const OWNED_TYPE_PREFIXES: [&str; 4] = ["deployment_", "infrastructure_", "monitoring_", "release_"];

/// True when a task with this agent and type belongs to this runner.
pub fn owns(config: &Config, agent: Option<&str>, kind: Option<&str>) -> bool {
    let (Some(agent), Some(kind)) = (agent, kind) else { return false };
    config.is_own_agent(agent) && OWNED_TYPE_PREFIXES.iter().any(|prefix| kind.starts_with(prefix))
}
