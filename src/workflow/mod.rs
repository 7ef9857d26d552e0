//! The workflow: the built-in DevOps nodes and the rule that says which tasks this runner owns.

pub mod agent;
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

/// True when a task with this agent and type belongs to this runner: a DevOps task of its
/// agent (or an alias), or a task of an agent node's `owner` of one of that node's types.
pub fn owns(config: &Config, agent: Option<&str>, kind: Option<&str>) -> bool {
    let (Some(agent), Some(kind)) = (agent, kind) else { return false };
    (config.is_own_agent(agent) && OWNED_TYPE_PREFIXES.iter().any(|prefix| kind.starts_with(prefix)))
        || config.agent_nodes.iter().any(|node| node.owner == agent && node.task_types.iter().any(|t| t == kind))
}

/// The agent nodes of the workspace's workflow, for [`owns`]: none when `workflow.json` is
/// missing or invalid (`validate` and the engine report an invalid one).
pub fn agent_owners(ws: &crate::workspace::Workspace) -> Vec<crate::config::NodeOwner> {
    let Ok(graph) = graph::Graph::load(ws) else { return Vec::new() };
    graph
        .nodes
        .into_iter()
        .filter(|node| node.action == graph::Action::Agent)
        .filter_map(|node| {
            Some(crate::config::NodeOwner { owner: node.owner.clone()?, node: node.name, task_types: node.task_types })
        })
        .collect()
}

/// Every agent this runner acts for: its own name, then each agent node's owner, once each.
pub fn agents_acted_for(config: &Config) -> Vec<String> {
    let mut agents = vec![config.agent.name.clone()];
    for node in &config.agent_nodes {
        if !agents.contains(&node.owner) {
            agents.push(node.owner.clone());
        }
    }
    agents
}
