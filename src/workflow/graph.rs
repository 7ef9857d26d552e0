//! The workflow graph as data: nodes with their action, task types, inputs, outputs and next.
//!
//! The built-in graph is the ten DevOps nodes (docs/reference.md): `next` edges, which the engine
//! follows on completion, and `on_failure` edges (verification to rollback), which are drawn
//! only. `docs/workflow/workflow.json`
//! can redefine it (validated by `workflow.schema.json`); each node names one of the built-in
//! actions, so a redefined graph reuses the same, tested behaviour, or is an agent node
//! (`"action": "agent"`), which runs another agent of the workflow and judges its outputs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::SchemaName;
use crate::validate::load_json;
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;

/// What a node does; the names are the built-in node names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "Environment_Design")]
    EnvironmentDesign,
    #[serde(rename = "Dev_Environment_Setup")]
    DevEnvironmentSetup,
    #[serde(rename = "CI_Pipeline_Setup")]
    CiPipelineSetup,
    #[serde(rename = "Staging_Environment_Setup")]
    StagingEnvironmentSetup,
    #[serde(rename = "Build_Release")]
    BuildRelease,
    #[serde(rename = "Deploy_To_Staging")]
    DeployToStaging,
    #[serde(rename = "Deploy_To_Production")]
    DeployToProduction,
    #[serde(rename = "Post_Deploy_Verification")]
    PostDeployVerification,
    #[serde(rename = "Rollback_Deployment")]
    RollbackDeployment,
    #[serde(rename = "Deployment_And_Continuous_Feedback")]
    DeploymentAndContinuousFeedback,
    /// Runs another agent of the workflow (the node's `agent` object) and judges its outputs.
    #[serde(rename = "agent")]
    Agent,
}

impl Action {
    /// True for the nodes that deploy (the QA gate applies to them).
    pub fn deploys(self) -> bool {
        matches!(self, Action::DeployToStaging | Action::DeployToProduction)
    }
}

/// An environment that a node's action changes by itself. A rollback changes the environment
/// its task names, so it has none here (`nodes::rollback_environment` decides it per task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Environment {
    Staging,
    Production,
}

impl Environment {
    /// The environment's name, as in `environments.<name>` of the config.
    pub fn name(self) -> &'static str {
        match self {
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub action: Action,
    #[serde(default)]
    pub task_types: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub next: Vec<String>,
    /// Nodes that follow when this one fails. Only drawn: the engine files a rollback itself,
    /// and these never become current on completion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What an agent node runs (`"action": "agent"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<super::agent::AgentSpec>,
    /// Read for compatibility with older `workflow.json` files, and otherwise unused: the
    /// environment a node changes follows its action ([`Node::changes_environment`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

impl Node {
    /// The environment this node changes, decided by its action and never by its name (a
    /// `workflow.json` may rename any node): a staging deploy changes staging, a production
    /// deploy and the verification that may roll it back change production. `None` for the
    /// nodes that change no environment, and for a rollback, whose task names its environment.
    ///
    /// This is the one answer to "which environment": the engine's gates and approvals and the
    /// daemon's `opsflow_deployments_total` all ask it.
    pub fn changes_environment(&self) -> Option<Environment> {
        match self.action {
            Action::DeployToStaging => Some(Environment::Staging),
            Action::DeployToProduction | Action::PostDeployVerification => Some(Environment::Production),
            Action::EnvironmentDesign
            | Action::DevEnvironmentSetup
            | Action::CiPipelineSetup
            | Action::StagingEnvironmentSetup
            | Action::BuildRelease
            | Action::RollbackDeployment
            | Action::DeploymentAndContinuousFeedback
            | Action::Agent => None,
        }
    }
}

/// A task no node of the workflow runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("the task names node `{node}`, which the workflow `{workflow}` does not have")]
    UnknownNode { node: String, workflow: String },
    #[error("no node of the workflow `{workflow}` handles the task type `{kind}`")]
    NoNodeForType { kind: String, workflow: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
}

fn node(name: &str, action: Action, types: &[&str], inputs: &[&str], outputs: &[&str], next: &[&str]) -> Node {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    Node {
        name: name.to_owned(),
        action,
        task_types: strings(types),
        inputs: strings(inputs),
        outputs: strings(outputs),
        next: strings(next),
        on_failure: Vec::new(),
        owner: None,
        agent: None,
        environment: None,
    }
}

impl Graph {
    pub fn built_in() -> Graph {
        use Action::*;
        Graph {
            name: "devops".to_owned(),
            nodes: vec![
                node(
                    "Environment_Design",
                    EnvironmentDesign,
                    &["infrastructure_design"],
                    &["INFRA01-requirements.md", "INFRA02-compute-needs.md", "INFRA03-storage-needs.md"],
                    &["INFRA04-env-specs.md", "INFRA05-iac-design.md", "INFRA06-deployment-strategy.md"],
                    &["Dev_Environment_Setup", "Staging_Environment_Setup"],
                ),
                node(
                    "Dev_Environment_Setup",
                    DevEnvironmentSetup,
                    &["infrastructure_dev_env"],
                    &["INFRA04-env-specs.md"],
                    &["INFRA08-dev-env.md", "INFRA09-tooling-setup.md"],
                    &["CI_Pipeline_Setup"],
                ),
                node(
                    "CI_Pipeline_Setup",
                    CiPipelineSetup,
                    &["infrastructure_ci"],
                    &["INFRA06-deployment-strategy.md", "INFRA08-dev-env.md"],
                    &["INFRA10-ci-pipeline.md", "INFRA11-quality-gates.md"],
                    &[],
                ),
                node(
                    "Staging_Environment_Setup",
                    StagingEnvironmentSetup,
                    &["infrastructure_update", "infrastructure_staging", "monitoring_setup"],
                    &["INFRA05-iac-design.md"],
                    &["INFRA12-staging-env.md", "INFRA13-monitoring-setup.md"],
                    &[],
                ),
                node(
                    "Build_Release",
                    BuildRelease,
                    &["deployment_build", "release_build"],
                    &["R04-merge-result.md"],
                    &["R06-release-artifacts/", "R07-version-tag.md"],
                    &["Deploy_To_Staging"],
                ),
                node(
                    "Deploy_To_Staging",
                    DeployToStaging,
                    &["deployment_staging"],
                    &["R06-release-artifacts/", "INFRA12-staging-env.md"],
                    &["R08-staging-deploy.md", "R09-smoke-tests.md"],
                    &["Deploy_To_Production"],
                ),
                node(
                    "Deploy_To_Production",
                    DeployToProduction,
                    &["deployment_production"],
                    &["R12-prod-approval.md", "INFRA06-deployment-strategy.md", "R08-staging-deploy.md"],
                    &["R13-prod-deploy.md", "R14-monitoring-active.md"],
                    &["Post_Deploy_Verification"],
                ),
                Node {
                    on_failure: vec!["Rollback_Deployment".to_owned()],
                    ..node(
                        "Post_Deploy_Verification",
                        PostDeployVerification,
                        &["deployment_verification"],
                        &["R13-prod-deploy.md", "R14-monitoring-active.md"],
                        &["R15-verification-result.md", "R16-health-check.md"],
                        &["Deployment_And_Continuous_Feedback"],
                    )
                },
                node(
                    "Rollback_Deployment",
                    RollbackDeployment,
                    &["deployment_rollback"],
                    &["R17-rollback-decision.md"],
                    &["R18-rollback-result.md"],
                    &[],
                ),
                node(
                    "Deployment_And_Continuous_Feedback",
                    DeploymentAndContinuousFeedback,
                    &["deployment_feedback"],
                    &["D21-release-candidate.md"],
                    &["D22-deployed-product.md", "D23-feedback-channels.md"],
                    &[],
                ),
            ],
        }
    }

    /// The workspace's graph: `workflow.json` when present and valid, else the built-in one.
    pub fn load(ws: &Workspace) -> Result<Graph, Vec<Diagnostic>> {
        let loaded = load_json(ws, &ws.config.paths.workflow, SchemaName::Workflow);
        if !loaded.diagnostics.is_empty() {
            return Err(loaded.diagnostics);
        }
        let graph = match loaded.value {
            None => return Ok(Graph::built_in()),
            Some(value) => serde_json::from_value::<Graph>(value).map_err(|e| {
                vec![Diagnostic::new(
                    &ws.config.paths.workflow,
                    crate::workspace::diagnostic::Kind::Schema,
                    e.to_string(),
                )]
            })?,
        };
        let problems: Vec<Diagnostic> = super::agent::problems(ws, &graph)
            .into_iter()
            .map(|d| d.locate_in(loaded.text.as_deref().unwrap_or_default()))
            .collect();
        if problems.is_empty() { Ok(graph) } else { Err(problems) }
    }

    /// Who writes an input: the node whose outputs name it, else another agent of the workflow.
    pub fn producer_of(&self, input: &str) -> Option<String> {
        if let Some(node) = self.nodes.iter().find(|n| n.outputs.iter().any(|o| o == input)) {
            return Some(format!("the {} node", node.name));
        }
        let agent = match input.split('-').next().unwrap_or_default() {
            "R04" => "the agent that merges the code (R04)",
            "D21" => "the agent that prepares the release candidate (D21)",
            name if name.starts_with("INFRA0") => "the architect agent (INFRA01 to INFRA03)",
            _ => return None,
        };
        Some(agent.to_owned())
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node a task runs: its `node` field, else the node that lists its type.
    pub fn node_for_task(&self, task: &Value) -> Result<&Node, GraphError> {
        if let Some(name) = task.get("node").and_then(Value::as_str) {
            return self
                .node(name)
                .ok_or_else(|| GraphError::UnknownNode { node: name.to_owned(), workflow: self.name.clone() });
        }
        let kind = task.get("type").and_then(Value::as_str).unwrap_or_default();
        self.nodes
            .iter()
            .find(|n| n.task_types.iter().any(|t| t == kind))
            .ok_or_else(|| GraphError::NoNodeForType { kind: kind.to_owned(), workflow: self.name.clone() })
    }

    /// The graph in Mermaid, with node statuses from `state.json` and current nodes marked.
    pub fn mermaid(&self, state: &Value) -> String {
        let mut out = format!("flowchart TD\n    %% workflow: {}\n", self.name);
        for node in &self.nodes {
            let status = node_status(state, &node.name);
            out.push_str(&format!("    {}[\"{}<br/>{}\"]\n", node.name, node.name, status));
        }
        for node in &self.nodes {
            for next in &node.next {
                out.push_str(&format!("    {} --> {}\n", node.name, next));
            }
            for next in &node.on_failure {
                out.push_str(&format!("    {} -. on failure .-> {}\n", node.name, next));
            }
        }
        out.push_str("    classDef completed fill:#d4edda,stroke:#28a745\n");
        out.push_str("    classDef current fill:#fff3cd,stroke:#ffc107,stroke-width:3px\n");
        out.push_str("    classDef failed fill:#f8d7da,stroke:#dc3545\n");
        out.push_str("    classDef blocked fill:#e2e3e5,stroke:#6c757d\n");
        for node in &self.nodes {
            let class = if is_current(state, &node.name) {
                Some("current")
            } else {
                match node_status(state, &node.name) {
                    "completed" => Some("completed"),
                    "failed" => Some("failed"),
                    "blocked" => Some("blocked"),
                    _ => None,
                }
            };
            if let Some(class) = class {
                out.push_str(&format!("    class {} {class}\n", node.name));
            }
        }
        out
    }

    /// The graph in Graphviz dot, with the same marks.
    pub fn dot(&self, state: &Value) -> String {
        let mut out = format!("digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box, style=rounded];\n", self.name);
        for node in &self.nodes {
            let status = node_status(state, &node.name);
            let (style, color) = if is_current(state, &node.name) {
                ("\"rounded,bold\"", "orange")
            } else {
                match status {
                    "completed" => ("rounded", "green"),
                    "failed" => ("rounded", "red"),
                    "blocked" => ("\"rounded,dashed\"", "gray"),
                    _ => ("rounded", "black"),
                }
            };
            out.push_str(&format!(
                "    \"{0}\" [label=\"{0}\\n{status}\", style={style}, color={color}];\n",
                node.name
            ));
        }
        for node in &self.nodes {
            for next in &node.next {
                out.push_str(&format!("    \"{}\" -> \"{}\";\n", node.name, next));
            }
            for next in &node.on_failure {
                out.push_str(&format!("    \"{}\" -> \"{}\" [style=dashed, label=\"on failure\"];\n", node.name, next));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn node_status<'a>(state: &'a Value, name: &str) -> &'a str {
    state.pointer(&format!("/nodes/{name}/status")).and_then(Value::as_str).unwrap_or("pending")
}

fn is_current(state: &Value, name: &str) -> bool {
    state.get("current_nodes").and_then(Value::as_array).is_some_and(|list| list.iter().any(|n| n == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_a_node_changes_follows_its_action_not_its_name() {
        let graph = Graph::built_in();
        let environment_of = |name: &str| graph.node(name).and_then(Node::changes_environment);
        assert_eq!(environment_of("Deploy_To_Staging"), Some(Environment::Staging));
        assert_eq!(environment_of("Deploy_To_Production"), Some(Environment::Production));
        assert_eq!(environment_of("Post_Deploy_Verification"), Some(Environment::Production));
        assert_eq!(environment_of("Rollback_Deployment"), None, "a rollback's task names its environment");
        assert_eq!(environment_of("Build_Release"), None);
        let renamed = Node { name: "Ship_It".to_owned(), ..graph.node("Deploy_To_Production").unwrap().clone() };
        assert_eq!(renamed.changes_environment(), Some(Environment::Production));
        let staging_named_production =
            Node { name: "Deploy_To_Production".to_owned(), ..graph.node("Deploy_To_Staging").unwrap().clone() };
        assert_eq!(staging_named_production.changes_environment(), Some(Environment::Staging));
    }
}
