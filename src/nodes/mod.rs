//! The ten node actions. Each reads its inputs, does its work through `exec`, and writes its
//! artifacts through `render`; the engine around it handles claims, gates and transitions.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::rollout::analysis::Baseline;
use crate::engine::artifacts::{self, Artifact};
use crate::rollout::deploy::{self, DeployReport, EnvConfig, Monitoring, RollbackReport, Rollout};
use crate::engine::gates::{self, Decision};
use crate::rollout::journal::{Journal, Pause, Phase};
use crate::exec::command::{Runner, StepResult};
use crate::rollout::deploy_lock::{self, DeployLock, DeployLockError, Holder};
use crate::rollout::local::copy_tree;
use crate::release::{self, Lookup, Release, Scope};
use crate::render::Renderer;
use crate::schema::SchemaName;
use crate::sha256;
use crate::store::file::write_atomic;
use crate::workflow::graph::{Action, Node};
use crate::workspace::Workspace;

/// How a node ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Design, setup and build nodes.
    Done,
    Deployed,
    RolledBack {
        reason: String,
    },
    Failed {
        step: String,
        reason: String,
        log: String,
    },
    /// The node could not go on and waits: a rollout paused for a human's decision
    /// (`escalate`: a human request is filed), or the environment is busy.
    Blocked {
        reason: String,
        escalate: bool,
    },
}

/// A node's failure before it could finish.
#[derive(Debug)]
pub struct NodeError {
    pub step: String,
    pub reason: String,
    pub log: String,
}

impl NodeError {
    pub fn new(step: &str, reason: impl Into<String>) -> NodeError {
        NodeError { step: step.to_owned(), reason: reason.into(), log: String::new() }
    }

    fn from_step(step: &StepResult) -> NodeError {
        NodeError { step: step.name.clone(), reason: step.summary(), log: step.log.clone() }
    }
}

/// Everything one node execution needs and produces.
pub struct NodeRun<'a> {
    pub ws: &'a Workspace,
    pub renderer: &'a Renderer,
    pub runner: Runner,
    pub node: &'a Node,
    pub task: &'a Value,
    pub run_id: String,
    pub unit_id: String,
    pub version: String,
    pub inputs: Vec<Artifact>,
    pub artifacts: Vec<String>,
    /// Nodes besides this one that the run completed (verification after a production deploy).
    pub also_completed: Vec<String>,
    pub summary: String,
    pub deploy: Option<DeployReport>,
    /// `approved_by` of the approval that let this release through, when one did.
    pub approved_by: Option<String>,
    /// Releases this run rolled back whose own tasks must now say `rolled_back`.
    pub rolled_back: Vec<Release>,
}

impl NodeRun<'_> {
    pub fn task_id(&self) -> String {
        self.task.get("id").and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    fn env_vars(&self, environment: &str) -> Vec<(String, String)> {
        vec![("OPSFLOW_ENV".into(), environment.to_owned())]
    }

    /// The fields every template can use.
    fn base_context(&self) -> Value {
        let config = &self.ws.config;
        let task_field = |key: &str| self.task.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|a| {
                let outline = artifacts::outline(&a.body);
                json!({"file": a.file, "sha256": a.sha256, "headings": outline.headings, "items": outline.items})
            })
            .collect();
        let environments: Vec<Value> = config
            .environments
            .iter()
            .map(|(name, env)| {
                let mut env = env.clone();
                if let Some(map) = env.as_object_mut() {
                    map.insert("name".into(), name.clone().into());
                    map.entry("strategy").or_insert_with(|| Value::String(String::new()));
                    map.entry("path").or_insert_with(|| Value::String(String::new()));
                    map.entry("health_checks").or_insert_with(|| json!([]));
                    map.entry("smoke_tests").or_insert_with(|| json!([]));
                }
                env
            })
            .collect();
        json!({
            "project": config.project.clone().unwrap_or_default(),
            "agent": config.agent.name,
            "node": self.node.name,
            "run_id": self.run_id,
            "generated_at": crate::time::now_rfc3339(),
            "unit_id": self.unit_id,
            "version": self.version,
            "task": {"id": task_field("id"), "title": task_field("title"), "type": task_field("type"), "priority": task_field("priority")},
            "inputs": inputs,
            "environments": environments,
            "gates": config.gates,
            "devops": {
                "require_human_approval": config.devops.require_human_approval,
                "approvers": config.devops.approvers,
                "monitoring_period": config.devops.monitoring_period,
                "monitoring_interval": config.devops.monitoring_interval,
                "auto_rollback_enabled": config.devops.auto_rollback_enabled,
                "rollback_triggers": config.devops.rollback_triggers,
            },
            "release": config.release,
            "dev": config.dev,
            "ci": config.ci,
            "feedback": feedback_list(&config.feedback),
        })
    }

    /// The release this run works on.
    pub fn release(&self) -> Release {
        Release::new(self.unit_id.clone(), self.version.clone())
    }

    /// Where an artifact goes (see `release::output_path`).
    fn artifact_path(&self, name: &str) -> String {
        release::output_path(self.ws, name, &self.release())
    }

    /// Renders and writes a markdown artifact; returns its path.
    pub fn write_markdown(
        &mut self,
        name: &str,
        relative: Option<String>,
        status: &str,
        extra: Value,
    ) -> Result<String, NodeError> {
        self.write_markdown_with(name, relative, status, extra, Map::new())
    }

    /// [`NodeRun::write_markdown`] with more front matter fields.
    pub fn write_markdown_with(
        &mut self,
        name: &str,
        relative: Option<String>,
        status: &str,
        extra: Value,
        fields: Map<String, Value>,
    ) -> Result<String, NodeError> {
        let template = if name.starts_with("Deploy-") { "Deploy-report.md" } else { name };
        let mut context = self.base_context();
        merge(&mut context, extra);
        let mut front = Map::new();
        front.insert("node".into(), self.node.name.clone().into());
        // Environment artifacts belong to no release: they name none, so any release uses them.
        let of_release = release::scope(name) == Scope::Release;
        if of_release && !self.unit_id.is_empty() {
            front.insert("unit_id".into(), self.unit_id.clone().into());
        }
        if of_release && !self.version.is_empty() {
            front.insert("version".into(), self.version.clone().into());
        }
        front.insert("status".into(), status.into());
        front.extend(fields);
        front.insert("run_id".into(), self.run_id.clone().into());
        front.insert("generated_at".into(), crate::time::now_rfc3339().into());
        front.insert("generated_by".into(), self.ws.config.agent.name.clone().into());
        let inputs: Vec<Value> = self.inputs.iter().map(|a| json!({"file": a.file, "sha256": a.sha256})).collect();
        front.insert("inputs".into(), inputs.into());
        let tags: Vec<Value> = [Some("opsflow"), name.split('-').next(), Some(self.node.name.as_str())]
            .into_iter()
            .flatten()
            .map(|t| Value::String(t.to_owned()))
            .collect();
        front.entry("tags").or_insert(tags.into());
        let text =
            self.renderer.markdown(template, &front, &context).map_err(|e| NodeError::new("render", e.to_string()))?;
        let relative = relative.unwrap_or_else(|| self.artifact_path(name));
        self.write(&relative, &text)?;
        if of_release {
            self.keep(name, &text)?;
        }
        Ok(relative)
    }

    /// Keeps this release's copy of an output in its history folder.
    fn keep(&mut self, name: &str, text: &str) -> Result<(), NodeError> {
        let masked = self.runner.secrets.mask(text);
        release::keep_in_history(self.ws, &self.release(), name, &masked).map_err(|e| NodeError::new("history", e))?;
        Ok(())
    }

    fn write(&mut self, relative: &str, text: &str) -> Result<(), NodeError> {
        let path = self.ws.inside(relative).map_err(|d| NodeError::new("write", d.to_string()))?;
        let masked = self.runner.secrets.mask(text);
        write_atomic(&path, masked.as_bytes()).map_err(|e| NodeError::new("write", e.to_string()))?;
        if !self.artifacts.iter().any(|a| a == relative) {
            self.artifacts.push(relative.to_owned());
        }
        Ok(())
    }

    fn run_step(&self, step: &str, command: &str, env: &[(String, String)]) -> Result<StepResult, NodeError> {
        let result = self.runner.run(step, command, None, None, env);
        if result.success { Ok(result) } else { Err(NodeError::from_step(&result)) }
    }
}

/// The `kind` (or `type`) of each feedback channel, in the order of [`feedback_list`].
fn feedback_kinds(feedback: &Value) -> Vec<String> {
    let kind = |item: &Value| {
        item.get("kind").or_else(|| item.get("type")).and_then(Value::as_str).unwrap_or_default().to_owned()
    };
    match feedback {
        Value::Array(items) => items.iter().map(kind).collect(),
        Value::Object(map) => map.values().map(kind).collect(),
        _ => Vec::new(),
    }
}

fn feedback_list(feedback: &Value) -> Vec<Value> {
    match feedback {
        Value::Array(items) => items.iter().map(|item| channel(item, None)).collect(),
        Value::Object(map) => map.iter().map(|(name, item)| channel(item, Some(name))).collect(),
        _ => Vec::new(),
    }
}

fn channel(item: &Value, name: Option<&str>) -> Value {
    let mut out = Map::new();
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    };
    let obj = item.as_object();
    let field = |key: &str| obj.and_then(|o| o.get(key));
    out.insert("name".into(), Value::String(name.map(str::to_owned).unwrap_or_else(|| text(field("name")))));
    out.insert("type".into(), Value::String(text(field("type"))));
    let target =
        if item.is_string() { text(Some(item)) } else { text(field("url").or(field("target")).or(field("command"))) };
    out.insert("target".into(), Value::String(target));
    out.insert("description".into(), Value::String(text(field("description"))));
    Value::Object(out)
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
}

/// The release directory: `<artifacts>/R06-release-artifacts/<UNIT_ID>/<version>`, or
/// `R06-release-artifacts/<version>` for a release without a unit. Versions are named without
/// their leading `v`, so `v1.2.3` and `1.2.3` are one release.
pub fn release_dir(ws: &Workspace, release: &Release) -> String {
    let base = format!("{}/R06-release-artifacts", ws.config.paths.artifacts.trim_end_matches('/'));
    match release.unit() {
        Some(unit) => format!("{base}/{unit}/{}", release.version.bare()),
        None => format!("{base}/{}", release.version.bare()),
    }
}

/// Checks a release directory against its `SHA256SUMS`: every listed file matches and no
/// file is unlisted. Returns the listed files.
pub fn verify_release(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let sums = fs::read_to_string(dir.join("SHA256SUMS")).map_err(|e| format!("{}/SHA256SUMS: {e}", dir.display()))?;
    let mut listed = Vec::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, file) = line.split_once("  ").ok_or_else(|| format!("SHA256SUMS: malformed line {line:?}"))?;
        if file.contains("..") || file.starts_with('/') {
            return Err(format!("SHA256SUMS names a path outside the release: {file}"));
        }
        let actual = sha256::file_hex(&dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        if actual != hash {
            return Err(format!(
                "{file} does not match SHA256SUMS (expected {hash}, found {actual}): the release was changed after it was built"
            ));
        }
        listed.push((file.to_owned(), hash.to_owned()));
    }
    let mut present = Vec::new();
    collect_files(dir, dir, &mut present).map_err(|e| e.to_string())?;
    if let Some(extra) = present.iter().find(|f| *f != "SHA256SUMS" && !listed.iter().any(|(l, _)| l == *f)) {
        return Err(format!(
            "{extra} is in the release but not in SHA256SUMS: the release was changed after it was built"
        ));
    }
    Ok(listed)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/"));
        }
    }
    out.sort();
    Ok(())
}

/// Runs the node's action.
pub fn run(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    match run.node.action {
        Action::EnvironmentDesign => environment_design(run),
        Action::DevEnvironmentSetup => dev_environment_setup(run),
        Action::CiPipelineSetup => ci_pipeline_setup(run),
        Action::StagingEnvironmentSetup => staging_environment_setup(run),
        Action::BuildRelease => build_release(run),
        Action::DeployToStaging => deploy_to(run, "staging"),
        Action::DeployToProduction => deploy_to(run, "production"),
        Action::PostDeployVerification => verification(run, "production"),
        Action::RollbackDeployment => rollback_deployment(run),
        Action::DeploymentAndContinuousFeedback => feedback(run),
    }
}

fn environment_design(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    for name in ["INFRA04-env-specs.md", "INFRA05-iac-design.md", "INFRA06-deployment-strategy.md"] {
        run.write_markdown(name, None, "completed", json!({}))?;
    }
    run.summary = format!(
        "designed {} environments from the config and {} input documents",
        run.ws.config.environments.len(),
        run.inputs.len()
    );
    Ok(Outcome::Done)
}

fn dev_environment_setup(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let env = run.env_vars("dev");
    let mut tools = Vec::new();
    for tool in run.ws.config.dev.tools.clone() {
        let step = run.runner.run(&format!("tool-{}", tool.name), &tool.version, None, None, &env);
        let version = step.tail.lines().next().unwrap_or("").trim().to_owned();
        tools.push(json!({"name": tool.name, "command": step.command, "found": step.success, "version": version, "log": step.log}));
        if !step.success {
            let mut error = NodeError::from_step(&step);
            error.reason = format!("the dev tool `{}` is not available: {}", tool.name, step.summary());
            return Err(error);
        }
    }
    let setup = match run.ws.config.dev.setup.clone() {
        Some(command) => {
            let step = run.run_step("setup", &command, &env)?;
            json!({"command": step.command, "summary": step.summary(), "log": step.log})
        }
        None => Value::Null,
    };
    let extra = json!({"tools": tools, "setup": setup});
    run.write_markdown("INFRA08-dev-env.md", None, "completed", extra.clone())?;
    run.write_markdown("INFRA09-tooling-setup.md", None, "completed", extra)?;
    run.summary = format!("checked {} dev tools", tools.len());
    Ok(Outcome::Done)
}

const PIPELINE_MARKER: &str = "# Generated by opsflow";

fn ci_pipeline_setup(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let output = run.ws.config.ci.output.clone();
    let path = run.ws.inside(&output).map_err(|d| NodeError::new("pipeline", d.to_string()))?;
    if let Ok(existing) = fs::read_to_string(&path)
        && !existing.starts_with(PIPELINE_MARKER)
    {
        return Err(NodeError::new(
            "pipeline",
            format!(
                "{output} exists and was not generated by opsflow; move it away or set `ci.output` to another file"
            ),
        ));
    }
    let context = run.base_context();
    let pipeline =
        run.renderer.plain("ci-pipeline.yml", &context).map_err(|e| NodeError::new("render", e.to_string()))?;
    run.write(
        &output,
        &format!("{PIPELINE_MARKER} ({}); edit templates/ci-pipeline.yml.hbs to change it\n{pipeline}", run.node.name),
    )?;
    let extra = json!({"pipeline_file": output});
    run.write_markdown("INFRA10-ci-pipeline.md", None, "completed", extra.clone())?;
    run.write_markdown("INFRA11-quality-gates.md", None, "completed", extra)?;
    run.summary = format!("wrote the CI pipeline {output}");
    Ok(Outcome::Done)
}

fn staging_environment_setup(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let env = EnvConfig::load(&run.ws.config, "staging").map_err(|e| NodeError::new("environment", e))?;
    let vars = run.env_vars("staging");
    let mut steps = Vec::new();
    if let Some(local) = env.local(&run.ws.root) {
        local
            .prepare()
            .map_err(|e| NodeError::new("prepare", format!("cannot create {}: {e}", local.root.display())))?;
    }
    if let Some((command, timeout)) = env.command("provision") {
        let step = run.runner.run("provision", &command, None, timeout, &vars);
        if !step.success {
            return Err(NodeError::from_step(&step));
        }
        steps.push(json!({"name": step.name, "summary": step.summary(), "log": step.log}));
    }
    // Health checks need a release; before the first deploy there is none to check.
    let live = env.local(&run.ws.root).is_none_or(|local| local.live_dir().is_some());
    let mut health = Vec::new();
    if live {
        for spec in &env.health_checks {
            let result =
                crate::exec::checks::run_check(&run.runner, "health", spec, &env.check_dir(&run.ws.root), &vars);
            if !result.passed {
                return Err(NodeError::new(
                    "health",
                    format!("staging health check `{}` failed: {}", result.name, result.detail),
                ));
            }
            health.push(result);
        }
    }
    let extra = json!({
        "environment": env_context(&env),
        "steps": steps,
        "health": health,
        "health_checked": live,
    });
    run.write_markdown("INFRA12-staging-env.md", None, "completed", extra.clone())?;
    run.write_markdown("INFRA13-monitoring-setup.md", None, "completed", extra)?;
    run.summary = "staging environment ready".to_owned();
    Ok(Outcome::Done)
}

fn env_context(env: &EnvConfig) -> Value {
    json!({
        "name": env.name,
        "provider": env.provider,
        "strategy": env.strategy(),
        "path": env.path.clone().unwrap_or_default(),
        "health_checks": env.health_checks.iter().map(|c| json!({"name": c.name, "target": c.command.clone().or(c.http.clone()).unwrap_or_default()})).collect::<Vec<_>>(),
        "smoke_tests": env.smoke_tests.iter().map(|c| json!({"name": c.name, "target": c.command.clone().or(c.http.clone()).unwrap_or_default()})).collect::<Vec<_>>(),
        "metrics": env.metrics.is_some(),
    })
}

fn build_release(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let version = run.version.clone();
    let mut vars = run.env_vars("build");
    let release = run.ws.config.release.clone();
    let mut steps = Vec::new();
    if let Some(build) = &release.build {
        let step = run.run_step("build", build, &vars)?;
        steps.push(json!({"name": step.name, "summary": step.summary(), "log": step.log}));
    }

    let relative = release_dir(run.ws, &run.release());
    let target = run.ws.inside(&relative).map_err(|d| NodeError::new("collect", d.to_string()))?;
    let staging = run.ws.root.join(format!(".opsflow/build-{}", run.run_id));
    let _ = fs::remove_dir_all(&staging);
    for entry in &release.artifacts {
        crate::config::relative_inside(entry)
            .map_err(|why| NodeError::new("collect", format!("`release.artifacts` entry {why}")))?;
        let source =
            run.ws.inside(entry.trim_end_matches('/')).map_err(|d| NodeError::new("collect", d.to_string()))?;
        let copied = if source.is_dir() {
            if entry.ends_with('/') {
                copy_tree(&source, &staging)
            } else {
                copy_tree(&source, &staging.join(source.file_name().unwrap_or_default()))
            }
        } else if source.is_file() {
            fs::create_dir_all(&staging)
                .and_then(|()| fs::copy(&source, staging.join(source.file_name().unwrap_or_default())).map(|_| ()))
        } else {
            return Err(NodeError::new(
                "collect",
                format!("release artifact `{entry}` does not exist after the build"),
            ));
        };
        copied.map_err(|e| NodeError::new("collect", format!("cannot copy `{entry}`: {e}")))?;
    }
    let mut files = Vec::new();
    collect_files(&staging, &staging, &mut files).map_err(|e| NodeError::new("checksum", e.to_string()))?;
    let mut sums = String::new();
    let mut listed = Vec::new();
    for file in &files {
        let hash = sha256::file_hex(&staging.join(file)).map_err(|e| NodeError::new("checksum", e.to_string()))?;
        sums.push_str(&format!("{hash}  {file}\n"));
        listed.push(json!({"file": file, "sha256": hash}));
    }
    fs::write(staging.join("SHA256SUMS"), &sums).map_err(|e| NodeError::new("checksum", e.to_string()))?;
    if target.exists() {
        // A version is immutable: the same content is fine, different content is refused.
        let existing = fs::read_to_string(target.join("SHA256SUMS")).unwrap_or_default();
        let _ = fs::remove_dir_all(&staging);
        if existing != sums {
            return Err(NodeError::new(
                "collect",
                format!(
                    "{relative} already exists with different content; a released version is immutable, so bump the version"
                ),
            ));
        }
    } else {
        crate::workspace::write::create_dir_all(&run.ws.root, target.parent().expect("a release dir has a parent"))
            .map_err(|e| NodeError::new("collect", e.to_string()))?;
        crate::workspace::write::rename(&run.ws.root, &staging, &target)
            .map_err(|e| NodeError::new("collect", format!("cannot move the release into {relative}: {e}")))?;
    }
    let mut tag = Value::Null;
    if release.git_tag {
        // The tag is `v` and the bare version: `v1.2.3` for `1.2.3` and for `v1.2.3` alike.
        let tag_name = release::Version::new(version.clone()).tag();
        vars.push(("OPSFLOW_VERSION".into(), version.clone()));
        vars.push(("OPSFLOW_TAG".into(), tag_name.clone()));
        let step = run.runner.run(
            "git-tag",
            "if git rev-parse -q --verify \"refs/tags/$OPSFLOW_TAG\" >/dev/null; then \
               test \"$(git rev-list -n 1 \"$OPSFLOW_TAG\")\" = \"$(git rev-parse HEAD)\" || \
               { echo \"tag $OPSFLOW_TAG exists on another commit\" >&2; exit 1; }; \
             else git tag -a \"$OPSFLOW_TAG\" -m \"Release $OPSFLOW_VERSION\"; fi && git rev-parse HEAD",
            None,
            None,
            &vars,
        );
        if !step.success {
            return Err(NodeError::from_step(&step));
        }
        tag = json!({"name": tag_name, "commit": step.tail.lines().last().unwrap_or("").trim()});
    }
    run.artifacts.push(format!("{relative}/"));
    // The digest of SHA256SUMS as built, so that a deploy can tell a release whose files and
    // SHA256SUMS were both rewritten afterwards: kept in opsflow's runtime folder and in R07.
    let sums_digest = sha256::hex(sums.as_bytes());
    let record = built_digest_path(run.ws, &run.release());
    if let Err(e) = run.ws.inside(&record).and_then(|path| {
        crate::store::file::write_atomic(&path, format!("{sums_digest}\n").as_bytes()).map_err(|e| {
            crate::workspace::diagnostic::Diagnostic::new(
                &record,
                crate::workspace::diagnostic::Kind::Io,
                e.to_string(),
            )
        })
    }) {
        tracing::warn!("cannot record the digest of {relative}/SHA256SUMS: {e}");
    }
    let extra = json!({"release_dir": relative, "files": listed, "steps": steps, "tag": tag});
    let mut front = Map::new();
    front.insert("sha256sums".into(), sums_digest.into());
    run.write_markdown_with("R07-version-tag.md", None, "completed", extra, front)?;
    run.summary = format!("built release {version}: {} files in {relative}", files.len());
    Ok(Outcome::Done)
}

fn deploy_to(run: &mut NodeRun<'_>, environment: &str) -> Result<Outcome, NodeError> {
    let env = EnvConfig::load(&run.ws.config, environment).map_err(|e| NodeError::new("environment", e))?;
    let lock = match lock_environment(run, &env)? {
        Ok(lock) => lock,
        Err(held) => return Ok(Outcome::Blocked { reason: held, escalate: false }),
    };
    let mut vars = run.env_vars(environment);
    vars.push(("OPSFLOW_VERSION".into(), run.version.clone()));
    let (journal, resumed) = match Journal::load(run.ws, &env.name).map_err(|e| NodeError::new("journal", e))? {
        Some(journal) if journal.task == run.task_id() && journal.phase == Phase::Paused => {
            match resume_paused(run, &env, journal, &vars)? {
                Resumed::Finished(outcome) => return Ok(outcome),
                Resumed::Continue(journal) => (*journal, true),
            }
        }
        Some(journal) => return Ok(Outcome::Blocked { reason: other_rollout(&env, &journal), escalate: false }),
        None => (new_journal(run, &env, Phase::Deploying), false),
    };
    let relative = release_dir(run.ws, &run.release());
    // The release is deployed from a copy without SHA256SUMS, checked again just before.
    let payload = run.ws.root.join(format!(".opsflow/payload-{}", run.run_id));
    let staged = run.ws.inside(&relative).map_err(|d| NodeError::new("stage", d.to_string()));
    let staged = staged.and_then(|release| {
        check_built_digest(run, &release)?;
        Ok(release)
    });
    let failed_staging = match staged.and_then(|release| stage_release(&release, &payload)) {
        Ok(()) => None,
        Err(error) if resumed => Some(error),
        Err(error) => return Err(error),
    };
    let mut journal = journal;
    if failed_staging.is_none() && journal.next_step == 0 && !journal.changed {
        // The baseline the analyses compare against is read before anything changes.
        journal.baseline = deploy::baseline(&run.runner, &env, &vars).map(|b| b.sample);
    }
    journal.save(run.ws).map_err(|e| NodeError::new("journal", e))?;
    let mut rollout = Rollout { ws: run.ws, runner: &run.runner, env: &env, vars: vars.clone(), journal };
    let mut report = match failed_staging {
        None => deploy::deploy(&mut rollout, &payload),
        // A paused rollout told to proceed cannot go on with a release that changed: it is
        // undone, and its journal removed below, so the environment is neither left half
        // rolled out nor held by a journal that no run will resume.
        Some(error) => deploy::abandon(&mut rollout, &error.step, error.reason),
    };
    let mut journal = rollout.journal;
    let _ = fs::remove_dir_all(&payload);
    report.stale_lock = lock.previous_holder.clone();
    run.deploy = Some(report.clone());
    let status = if report.paused.is_some() {
        "paused"
    } else if report.success {
        "success"
    } else {
        "failed"
    };
    let extra =
        json!({"deploy": report, "method": env.method(), "environment": env_context(&env), "release_dir": relative});
    if environment == "staging" {
        run.write_markdown("R08-staging-deploy.md", None, status, extra.clone())?;
        run.write_markdown("R09-smoke-tests.md", None, status, extra)?;
    } else {
        let mut front = Map::new();
        front.insert("approved_by".into(), run.approved_by.clone().map_or(Value::Null, Value::String));
        run.write_markdown_with("R13-prod-deploy.md", None, status, extra.clone(), front)?;
        run.write_markdown("R14-monitoring-active.md", None, status, extra)?;
        // The approval that let this release through is kept with the release's history.
        if let Some(approval) = run.inputs.iter().find(|a| a.file.contains("-approval")).cloned()
            && let Ok(Some(text)) = run.ws.read_text(&approval.file)
        {
            let name = approval.file.rsplit('/').next().unwrap_or_default().to_owned();
            let _ = release::keep_in_history(run.ws, &run.release(), &format!("approved-{name}"), &text);
        }
    }
    if let Some((stage, reason)) = report.paused.clone() {
        return pause(run, &env, journal, &stage, &reason);
    }
    if !report.success {
        Journal::remove(run.ws, &env.name);
        let step = report.failed_step.clone().unwrap_or_else(|| "deploy".to_owned());
        // An analysis that fails is a rollback decision, recorded as such (R17, R18).
        if step == "analysis"
            && let Some(rollback) = report.rollback.clone()
        {
            let mut front = Map::new();
            front.insert("environment".into(), env.name.clone().into());
            front.insert("decided_by".into(), run.ws.config.agent.name.clone().into());
            write_rollback_decision(run, "rollback", &report.reason, front)?;
            write_rollback_result(run, &rollback, &report.reason, "")?;
            if environment == "production" {
                write_reports(run, &env, &report, None, "rolled_back")?;
            }
            if rollback.success {
                run.summary = format!("rolled back {} in {environment}: {}", run.version, report.reason);
                return Ok(Outcome::RolledBack { reason: report.reason.clone() });
            }
            return Ok(Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: report.failed_log() });
        }
        if environment == "production" {
            write_reports(run, &env, &report, None, "failed")?;
        }
        // Undoing the failed deploy failed too: the environment may be half changed.
        if let Some(rollback) = report.rollback.as_ref().filter(|r| !r.success) {
            return Ok(Outcome::Failed {
                step: "rollback".into(),
                reason: format!("{}; rolling back failed too: {}", report.reason, rollback.detail),
                log: report.failed_log(),
            });
        }
        return Ok(Outcome::Failed { step, reason: report.reason.clone(), log: report.failed_log() });
    }
    if environment != "production" {
        Journal::remove(run.ws, &env.name);
        run.summary = format!("deployed {} to {environment} ({})", run.version, report.strategy);
        return Ok(Outcome::Deployed);
    }
    // Production goes straight on to verification in the same run.
    journal.phase = Phase::Verifying;
    journal.save(run.ws).map_err(|e| NodeError::new("journal", e))?;
    let verified = verify(run, &env, &mut journal, &vars)?;
    run.also_completed.push("Post_Deploy_Verification".to_owned());
    let outcome = match verified {
        Verified::Passed(monitoring) => {
            write_reports(run, &env, &report, Some(&monitoring), "success")?;
            run.summary = format!("deployed {} to production ({}) and verified it", run.version, report.strategy);
            Outcome::Deployed
        }
        Verified::Paused(monitoring) => {
            run.also_completed.clear();
            write_reports(run, &env, &report, Some(&monitoring), "failed")?;
            let reason = monitoring.reason.clone();
            // The report's statuses have no "paused": it says failed, and why it waits.
            patch_report(run, "failed", &format!("the monitoring period paused for a human decision in R17: {reason}"));
            return pause(run, &env, journal, "monitoring period", &reason);
        }
        Verified::Interrupted(monitoring) => {
            write_reports(run, &env, &report, Some(&monitoring), "failed")?;
            Outcome::Failed { step: "verification".into(), reason: monitoring.reason, log: String::new() }
        }
        Verified::RolledBack(monitoring, rollback) => {
            write_reports(run, &env, &report, Some(&monitoring), "rolled_back")?;
            if rollback.success {
                run.summary = format!("rolled back {} in production: {}", run.version, monitoring.reason);
                Outcome::RolledBack { reason: monitoring.reason }
            } else {
                Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() }
            }
        }
    };
    Journal::remove(run.ws, &env.name);
    Ok(outcome)
}

/// Takes the deploy lock of `env`; `Ok(Err(..))` names the live holder that refuses it.
fn lock_environment(run: &NodeRun<'_>, env: &EnvConfig) -> Result<Result<DeployLock, String>, NodeError> {
    let holder = Holder { agent: run.ws.config.agent.name.clone(), run_id: run.run_id.clone(), task: run.task_id() };
    match deploy_lock::acquire(&env.lock_path(run.ws), &env.name, &holder) {
        Ok(lock) => {
            if let Some(previous) = &lock.previous_holder {
                tracing::warn!("took over the deploy lock of {} left by a holder that died ({previous})", env.name);
            }
            Ok(Ok(lock))
        }
        Err(held @ DeployLockError::Held { .. }) => Ok(Err(held.to_string())),
        Err(e) => Err(NodeError::new("lock", e.to_string())),
    }
}

/// Why a deploy to `env` waits for another task's unfinished rollout.
pub fn other_rollout(env: &EnvConfig, journal: &Journal) -> String {
    match &journal.pause {
        Some(pause) => format!(
            "{} has a paused rollout of task {} (version {}) waiting for a decision in {}",
            env.name, journal.task, journal.version, pause.decision_file
        ),
        None => format!(
            "{} has an unfinished rollout of task {} (version {}, run {})",
            env.name, journal.task, journal.version, journal.run_id
        ),
    }
}

/// The `blocked_reason` of a task whose rollout paused: the same text on every pass, so that
/// waiting writes nothing.
pub fn pause_reason(journal: &Journal) -> String {
    match &journal.pause {
        Some(pause) => format!(
            "rollout paused at {}: {}; decide in {} (`decision: rollback` or `decision: proceed`)",
            pause.stage, pause.reason, pause.decision_file
        ),
        None => format!("rollout of {} to {} paused", journal.version, journal.environment),
    }
}

fn new_journal(run: &NodeRun<'_>, env: &EnvConfig, phase: Phase) -> Journal {
    let now = crate::time::now_rfc3339();
    Journal {
        environment: env.name.clone(),
        task: run.task_id(),
        node: run.node.name.clone(),
        unit_id: run.unit_id.clone(),
        version: run.version.clone(),
        run_id: run.run_id.clone(),
        agent: run.ws.config.agent.name.clone(),
        pid: std::process::id(),
        provider: env.provider.clone(),
        strategy: env.strategy().to_owned(),
        phase,
        changed: phase != Phase::Deploying,
        started_at: now.clone(),
        updated_at: now,
        ..Journal::default()
    }
}

/// Pauses a rollout for a human: the journal keeps where it stopped, R17 asks for the
/// decision (`decision: pending`), and the task waits (`blocked`, re-checked every pass).
fn pause(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    mut journal: Journal,
    stage: &str,
    reason: &str,
) -> Result<Outcome, NodeError> {
    let decision_file = run.artifact_path("R17-rollback-decision.md");
    let id = format!("{}-{}", run.run_id, journal.next_step);
    journal.phase = Phase::Paused;
    journal.pause = Some(Pause {
        id: id.clone(),
        stage: stage.to_owned(),
        reason: run.runner.secrets.mask(reason),
        at: crate::time::now_rfc3339(),
        decision_file: decision_file.clone(),
    });
    journal.save(run.ws).map_err(|e| NodeError::new("journal", e))?;
    let mut front = Map::new();
    front.insert("pause_id".into(), id.into());
    front.insert("environment".into(), env.name.clone().into());
    front.insert("stage".into(), stage.into());
    front.insert("decided_by".into(), Value::Null);
    write_rollback_decision(run, "pending", reason, front)?;
    run.summary =
        format!("paused {} in {} at {stage}: waiting for a decision in {decision_file}", run.version, env.name);
    Ok(Outcome::Blocked { reason: pause_reason(&journal), escalate: true })
}

/// How a paused rollout goes on.
enum Resumed {
    /// The decision ended it (rolled back, or accepted after the monitoring period), or it
    /// still waits.
    Finished(Outcome),
    /// `proceed` at a canary step or rolling batch: deploy on from the journal.
    Continue(Box<Journal>),
}

/// Where the digest of a release's `SHA256SUMS` as built is kept: opsflow's runtime folder.
fn built_digest_path(ws: &Workspace, release: &Release) -> String {
    let runtime = ws.config.paths.runtime.trim_end_matches('/');
    match release.unit() {
        Some(unit) => format!("{runtime}/built/{unit}/{}.sha256", release.version.bare()),
        None => format!("{runtime}/built/{}.sha256", release.version.bare()),
    }
}

/// Refuses a release whose `SHA256SUMS` is not the one it was built with. The digest recorded
/// at build time is read from opsflow's runtime folder, else from the release's R07 (its
/// history copy first); a release built before digests were recorded is checked against
/// `SHA256SUMS` alone.
fn check_built_digest(run: &NodeRun<'_>, dir: &Path) -> Result<(), NodeError> {
    let recorded = run
        .ws
        .read_text(&built_digest_path(run.ws, &run.release()))
        .ok()
        .flatten()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .or_else(|| {
            release::find(run.ws, "R07-version-tag.md", &run.release())
                .ok()
                .and_then(Lookup::found)
                .and_then(|r07| r07.field("sha256sums").map(str::to_owned))
        });
    let Some(recorded) = recorded else { return Ok(()) };
    let now = fs::read(dir.join("SHA256SUMS")).map(|bytes| sha256::hex(&bytes)).unwrap_or_default();
    if now != recorded {
        return Err(NodeError::new(
            "checksums",
            format!(
                "{}/SHA256SUMS is not the one the release was built with (recorded {recorded}, found {}): the release was changed after it was built",
                run.ws.label(dir),
                if now.is_empty() { "none".to_owned() } else { now }
            ),
        ));
    }
    Ok(())
}

/// Checks a release against its SHA256SUMS and copies it, without that file, to `payload`,
/// the directory it is deployed from. Nothing is left at `payload` on error.
fn stage_release(dir: &Path, payload: &Path) -> Result<(), NodeError> {
    verify_release(dir).map_err(|e| NodeError::new("checksums", e))?;
    let _ = fs::remove_dir_all(payload);
    if let Err(e) = copy_tree(dir, payload) {
        let _ = fs::remove_dir_all(payload);
        return Err(NodeError::new("stage", e.to_string()));
    }
    let _ = fs::remove_file(payload.join("SHA256SUMS"));
    Ok(())
}

/// Acts on the human's decision about a paused rollout.
fn resume_paused(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    mut journal: Journal,
    vars: &[(String, String)],
) -> Result<Resumed, NodeError> {
    let (decision, artifact) = gates::rollout_decision(run.ws, &journal)
        .map_err(|d| NodeError::new("decision", d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    let decision_sha = artifact.as_ref().map(|a| a.sha256.clone()).unwrap_or_default();
    if let Some(artifact) = artifact
        && !run.inputs.iter().any(|a| a.file == artifact.file)
    {
        run.inputs.push(artifact);
    }
    let stage = journal.pause.as_ref().map(|p| p.stage.clone()).unwrap_or_default();
    match decision {
        Decision::Pending(_) => {
            Ok(Resumed::Finished(Outcome::Blocked { reason: pause_reason(&journal), escalate: false }))
        }
        Decision::Rollback { by, reason } => {
            let why = format!("{by} decided to roll back at {stage}: {reason}");
            let rollback = deploy::rollback(run.ws, &run.runner, env, vars, Some(&journal));
            write_rollback_result(run, &rollback, &why, &decision_sha)?;
            Journal::remove(run.ws, &env.name);
            patch_report(run, "rolled_back", &why);
            Ok(Resumed::Finished(if rollback.success {
                run.summary = format!("rolled back {} in {}: {why}", journal.version, env.name);
                Outcome::RolledBack { reason: why }
            } else {
                Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() }
            }))
        }
        Decision::Proceed { by, reason } if journal.phase == Phase::Paused && stage == "monitoring period" => {
            let why = format!("{by} decided to proceed after the monitoring period: {reason}");
            Journal::remove(run.ws, &env.name);
            patch_report(run, "success", &why);
            run.also_completed.push("Post_Deploy_Verification".to_owned());
            run.summary = format!("{} stays in {}: {why}", journal.version, env.name);
            Ok(Resumed::Finished(Outcome::Deployed))
        }
        Decision::Proceed { by, reason } => {
            tracing::info!("{by} decided to proceed with {} in {} after {stage}: {reason}", journal.version, env.name);
            journal.phase = Phase::Deploying;
            journal.pause = None;
            Ok(Resumed::Continue(Box::new(journal)))
        }
    }
}

/// What the monitoring of a production release came to.
enum Verified {
    Passed(Monitoring),
    /// Inconclusive, or failed with `auto_rollback_enabled` off: a human decides.
    Paused(Monitoring),
    /// Cut short by a shutdown: neither a pass nor a reason to roll back.
    Interrupted(Monitoring),
    RolledBack(Monitoring, Box<RollbackReport>),
}

/// Monitors production; on failure writes R17 and, with `auto_rollback_enabled`, rolls back
/// and writes R18.
fn verify(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    journal: &mut Journal,
    vars: &[(String, String)],
) -> Result<Verified, NodeError> {
    let baseline = journal.baseline.clone().map(Baseline::new);
    let monitoring = deploy::monitor(&run.runner, env, &run.ws.config, baseline.as_ref(), vars);
    let status = if monitoring.healthy { "success" } else { "failed" };
    let extra = json!({"monitoring": monitoring, "environment": env_context(env)});
    run.write_markdown("R15-verification-result.md", None, status, extra.clone())?;
    run.write_markdown("R16-health-check.md", None, status, extra)?;
    if monitoring.healthy {
        return Ok(Verified::Passed(monitoring));
    }
    if monitoring.interrupted {
        return Ok(Verified::Interrupted(monitoring));
    }
    if monitoring.verdict == "inconclusive" || !run.ws.config.devops.auto_rollback_enabled {
        return Ok(Verified::Paused(monitoring));
    }
    let mut front = Map::new();
    front.insert("environment".into(), env.name.clone().into());
    front.insert("decided_by".into(), run.ws.config.agent.name.clone().into());
    write_rollback_decision(run, "rollback", &monitoring.reason, front)?;
    let rollback = deploy::rollback(run.ws, &run.runner, env, vars, Some(journal));
    write_rollback_result(run, &rollback, &monitoring.reason, "")?;
    Ok(Verified::RolledBack(monitoring, Box::new(rollback)))
}

pub fn write_rollback_result(
    run: &mut NodeRun<'_>,
    rollback: &RollbackReport,
    reason: &str,
    decision_sha256: &str,
) -> Result<(), NodeError> {
    let status = if rollback.success { "success" } else { "failed" };
    let mut front = Map::new();
    front.insert("environment".into(), rollback.environment.clone().into());
    if !decision_sha256.is_empty() {
        front.insert("decision_sha256".into(), decision_sha256.into());
    }
    run.write_markdown_with(
        "R18-rollback-result.md",
        None,
        status,
        json!({"rollback": rollback, "reason": reason}),
        front,
    )?;
    Ok(())
}

/// Records in `deployment-report.json` what became of the release after the report was
/// written, when the report is this unit's and version's.
fn patch_report(run: &mut NodeRun<'_>, status: &str, why: &str) {
    let release = run.release();
    patch_report_of(run, &release, status, why);
}

/// [`patch_report`] for `release`, which may be another than the run's (a human's rollback
/// undoes the release that was live). The plain report is patched when it is that release's;
/// the release's history copy always is.
fn patch_report_of(run: &mut NodeRun<'_>, release: &Release, status: &str, why: &str) {
    let plain = run.ws.config.paths.deployment_report.clone();
    let mut targets = vec![plain.clone()];
    targets.extend(release.history_dir(run.ws).map(|dir| format!("{dir}/deployment-report.json")));
    for file in targets {
        let Ok(Some(text)) = run.ws.read_text(&file) else { continue };
        let Ok(mut report) = crate::workspace::read::parse_json(&file, &text) else { continue };
        let field = |key: &str| report.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        if !(field("unit_id") == release.unit && release::same_version(&field("version"), release.version.as_str())) {
            continue;
        }
        report["deployment_summary"]["status"] = json!(status);
        if let Some(issues) = report.get_mut("known_issues").and_then(Value::as_array_mut)
            && !issues.iter().any(|i| i.as_str() == Some(why))
        {
            issues.push(json!(why));
        }
        report["next_steps"] = json!(next_steps(status));
        if status != "success" {
            report["services_deployed"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .for_each(|service| service["status"] = json!("unhealthy"));
        }
        report["run_id"] = json!(run.run_id);
        if run.ws.schemas.validate(SchemaName::DeploymentReport, &file, &report).is_empty() {
            let text = format!("{}\n", serde_json::to_string_pretty(&report).expect("a Value serializes"));
            if file == plain {
                let _ = run.write(&file, &text);
            } else if let Ok(path) = run.ws.inside(&file) {
                let _ = write_atomic(&path, run.runner.secrets.mask(&text).as_bytes());
            }
        }
    }
}

/// Says in `Deploy-<UNIT_ID>.md` (and its history copy) that `release` was rolled back: its
/// front matter `status` becomes `rolled_back` and a section says by whom and why.
fn mark_deploy_report_rolled_back(run: &mut NodeRun<'_>, release: &Release, why: &str, restored: &str) {
    let name = format!("Deploy-{}.md", release.unit);
    let mut files = vec![format!("{}/{name}", run.ws.config.paths.deployments.trim_end_matches('/'))];
    files.extend(release.history_dir(run.ws).map(|dir| format!("{dir}/{name}")));
    for file in files {
        let Ok(Some(text)) = run.ws.read_text(&file) else { continue };
        let Ok(doc) = crate::workspace::read::parse_markdown(&file, &text) else { continue };
        let Some(fm) = doc.front_matter else { continue };
        let field = |key: &str| fm.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        if field("unit_id") != release.unit || !release::same_version(&field("version"), release.version.as_str()) {
            continue;
        }
        // Front matter is written by code, one `key: JSON value` a line.
        let Some(end) = text.get(4..).and_then(|rest| rest.find("\n---\n")).map(|i| i + 4) else { continue };
        let (front, body) = text.split_at(end);
        let front: String = front
            .lines()
            .map(
                |line| {
                    if line.starts_with("status: ") { "status: \"rolled_back\"".to_owned() } else { line.to_owned() }
                },
            )
            .collect::<Vec<_>>()
            .join("\n");
        let note = crate::render::markdown_escape(&run.runner.secrets.mask(why));
        let section = format!(
            "\n## Rolled back\n\n- Rolled back by run `{}` at {}: {note}\n- Restored: {}\n",
            run.run_id,
            crate::time::now_rfc3339(),
            crate::render::markdown_escape(restored)
        );
        let patched = format!("{front}{body}{section}");
        if let Ok(path) = run.ws.inside(&file) {
            let _ = write_atomic(&path, run.runner.secrets.mask(&patched).as_bytes());
        }
    }
}

fn write_rollback_decision(
    run: &mut NodeRun<'_>,
    decision: &str,
    reason: &str,
    fields: Map<String, Value>,
) -> Result<(), NodeError> {
    // R17's front matter is the contract humans answer in, so it carries the decision fields.
    let mut front = Map::new();
    front.insert("decision".into(), decision.into());
    front.insert("reason".into(), run.runner.secrets.mask(reason).into());
    front.insert("unit_id".into(), run.unit_id.clone().into());
    front.insert("version".into(), run.version.clone().into());
    front.extend(fields);
    front.insert("node".into(), run.node.name.clone().into());
    front.insert("run_id".into(), run.run_id.clone().into());
    front.insert("generated_at".into(), crate::time::now_rfc3339().into());
    let mut context = run.base_context();
    merge(&mut context, json!({"decision": decision, "reason": reason}));
    let text = run
        .renderer
        .markdown("R17-rollback-decision.md", &front, &context)
        .map_err(|e| NodeError::new("render", e.to_string()))?;
    let relative = run.artifact_path("R17-rollback-decision.md");
    run.write(&relative, &text)
}

fn write_reports(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    report: &DeployReport,
    monitoring: Option<&Monitoring>,
    status: &str,
) -> Result<(), NodeError> {
    let method = env.method();
    // Only what ran is reported as passed: no smoke test run is `not_run`, no migration `skipped`.
    let smoke_status = if report.smoke.iter().any(|s| !s.passed) || report.failed_step.as_deref() == Some("smoke") {
        "failed"
    } else if report.smoke.is_empty() {
        "not_run"
    } else {
        "passed"
    };
    let migration_status = if report.failed_step.as_deref() == Some("migrate") {
        "failed"
    } else if report.migrated {
        "success"
    } else {
        "skipped"
    };
    let service_status = match (status, monitoring.map(|m| m.healthy)) {
        ("success", _) => "healthy",
        (_, Some(true)) => "degraded",
        _ => "unhealthy",
    };
    let health_url = env.health_checks.iter().find_map(|c| c.http.clone()).unwrap_or_default();
    let resources = match env.local(&run.ws.root) {
        Some(local) => vec![format!(
            "{}/{}",
            local.root.strip_prefix(&run.ws.root).unwrap_or(&local.root).display(),
            report.target
        )],
        None => vec![format!("{} via `commands.deploy`", env.name)],
    };
    let extra = json!({
        "report_status": status,
        "environment_name": if matches!(env.name.as_str(), "production" | "staging" | "dev") { env.name.clone() } else { "production".into() },
        "deployment_method": method,
        "deployed_at": crate::time::now_rfc3339(),
        "region": if env.provider == "local" { "local" } else { "configured by command" },
        "resources": resources,
        "service_status": service_status,
        "health_check_url": health_url,
        // A feedback channel of kind `dashboard` is where the metrics are watched.
        "dashboard_url": feedback_list(&run.ws.config.feedback)
            .iter()
            .zip(feedback_kinds(&run.ws.config.feedback))
            .find(|(_, kind)| kind == "dashboard")
            .map(|(channel, _)| channel["target"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default(),
        "migrated": report.migrated,
        "migration_status": migration_status,
        "approved_by": run.approved_by,
        "metrics_enabled": if env.metrics.is_some() { "enabled" } else { "disabled" },
        "alerting_enabled": if env.health_checks.is_empty() { "disabled" } else { "enabled" },
        "smoke_status": smoke_status,
        "smoke_tests_run": report.smoke.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "secrets_management": if run.ws.config.secrets.is_empty() { "environment variables, masked in every output" } else { "named environment variables, masked in every output" },
        "rollback_plan": match env.local(&run.ws.root) {
            Some(_) => format!("switch back to the last good release ({}); releases marked bad are skipped", report.previous_version.clone().unwrap_or_else(|| "none: take the environment down".into())),
            None => "run `commands.rollback` (and `commands.migrate_down` when the deploy migrated)".to_owned(),
        },
        "known_issues": match (status, report.reason.is_empty(), monitoring) {
            ("success", _, _) => Vec::<String>::new(),
            (_, false, _) => vec![report.reason.clone()],
            (_, true, Some(monitoring)) if !monitoring.healthy => vec![monitoring.reason.clone()],
            _ => Vec::new(),
        },
        "next_steps": next_steps(status),
        "deploy": report,
        "monitoring": monitoring,
    });
    let mut context = run.base_context();
    merge(&mut context, extra.clone());
    let value = run
        .renderer
        .json("deployment-report.json", &context, run.ws, SchemaName::DeploymentReport)
        .map_err(|e| NodeError::new("report", e.to_string()))?;
    let mut value = value;
    run.runner.secrets.mask_json(&mut value);
    let report_file = run.ws.config.paths.deployment_report.clone();
    run.write(&report_file, &format!("{}\n", serde_json::to_string_pretty(&value).expect("a Value serializes")))?;
    let report_text = format!("{}\n", serde_json::to_string_pretty(&value).expect("a Value serializes"));
    run.keep("deployment-report.json", &report_text)?;
    let deploy_md = format!("{}/Deploy-{}.md", run.ws.config.paths.deployments.trim_end_matches('/'), run.unit_id);
    let name = format!("Deploy-{}.md", run.unit_id);
    let (front, seed) = seed_deploy_report(run, env, report, monitoring, status);
    let mut extra = extra;
    merge(&mut extra, seed);
    run.write_markdown_with(&name, Some(deploy_md), status, extra, front)?;
    Ok(())
}

/// The front matter and body figures of `Deploy-<UNIT_ID>.md` in seed 000's own shape
/// (Phase 5: tags, project, deployed, links; Summary, Pre-Deployment State, Deployment
/// Timeline, Verification Results, Post-Deployment State, Issues Encountered, Rollback Status),
/// beside opsflow's provenance fields.
fn seed_deploy_report(
    run: &NodeRun<'_>,
    env: &EnvConfig,
    report: &DeployReport,
    monitoring: Option<&Monitoring>,
    status: &str,
) -> (Map<String, Value>, Value) {
    let config = &run.ws.config;
    let now = crate::time::now_rfc3339();
    let mut front = Map::new();
    front.insert("tags".into(), json!(["deployment", "release", "agent/devops"]));
    let project = config.project.clone().unwrap_or_else(|| "project".to_owned());
    front.insert("project".into(), json!(format!("[[01-Projects/{project}]]")));
    front
        .insert("deployed".into(), json!(format!("{} {}", now.get(..10).unwrap_or(""), now.get(11..16).unwrap_or(""))));
    front.insert(
        "links".into(),
        json!({
            "qa_report": format!("[[{}/QA-Report-{}]]", config.paths.qa_reports.trim_end_matches('/'), run.unit_id),
            "artifacts": release_dir(run.ws, &run.release()),
        }),
    );
    front.insert("approved_by".into(), run.approved_by.clone().map_or(Value::Null, Value::String));

    let mut timeline = report.timeline.clone();
    if let Some(monitoring) = monitoring {
        timeline.push(deploy::TimelineEvent {
            time: deploy::clock(),
            action: format!("Monitoring period ({} samples): {}", monitoring.samples.len(), monitoring.verdict),
            status: if monitoring.healthy { "PASS" } else { "FAIL" }.to_owned(),
        });
    }
    let end = match status {
        "success" => ("Deployment complete", "SUCCESS"),
        "rolled_back" => ("Rolled back to the previous release", "ROLLED_BACK"),
        _ => ("Deployment failed", "FAILED"),
    };
    timeline.push(deploy::TimelineEvent { time: deploy::clock(), action: end.0.to_owned(), status: end.1.to_owned() });
    let seconds = |t: &str| -> Option<i64> {
        let mut parts = t.split(':').map(|p| p.parse::<i64>().ok());
        Some(parts.next()?? * 3600 + parts.next()?? * 60 + parts.next()??)
    };
    let duration = match (timeline.first().and_then(|e| seconds(&e.time)), seconds(&deploy::clock())) {
        (Some(start), Some(end)) => format!("{}s", (end - start).rem_euclid(86_400)),
        _ => "unknown".to_owned(),
    };

    let triggers = &config.devops.rollback_triggers;
    let baseline = monitoring.and_then(|m| m.baseline.clone());
    let last = monitoring.and_then(|m| m.last_sample.clone());
    let mut rows = Vec::new();
    for (kind, results) in [("Health", &report.health), ("Smoke test", &report.smoke)] {
        for result in results.iter() {
            let spec = env.health_checks.iter().chain(&env.smoke_tests).find(|c| c.name == result.name);
            let expected = match spec {
                Some(c) if c.http.is_some() => format!("HTTP {}", c.expect_status.unwrap_or(200)),
                _ => "exit 0".to_owned(),
            };
            rows.push(json!({"check": format!("{kind} `{}`", result.name), "expected": expected,
                "actual": result.detail, "status": if result.passed { "PASS" } else { "FAIL" }}));
        }
    }
    let figure = |value: Option<f64>, unit: &str| value.map_or("not measured".to_owned(), |v| format!("{v}{unit}"));
    if env.metrics.is_some() {
        let rate = last.as_ref().and_then(|s| s.error_rate);
        rows.push(json!({"check": "Error rate", "expected": format!("< {}%", triggers.error_rate),
            "actual": figure(rate, "%"),
            "status": match rate { Some(r) if r <= triggers.error_rate => "PASS", Some(_) => "FAIL", None => "-" }}));
        let p95 = last.as_ref().and_then(|s| s.latency_p95_ms);
        let limit = baseline.as_ref().and_then(|b| b.latency_p95_ms).map(|b| b * triggers.latency_p95_ratio);
        rows.push(json!({"check": "P95 latency",
            "expected": limit.map_or(format!("< {}x baseline", triggers.latency_p95_ratio), |l| format!("< {l} ms ({}x baseline)", triggers.latency_p95_ratio)),
            "actual": figure(p95, " ms"),
            "status": match (p95, limit) { (Some(p), Some(l)) if p <= l => "PASS", (Some(_), Some(_)) => "FAIL", _ => "-" }}));
    }
    let sample_text = |sample: Option<&crate::exec::metrics::Sample>| match sample {
        Some(s) => format!("error rate {}, p95 latency {}", figure(s.error_rate, "%"), figure(s.latency_p95_ms, " ms")),
        None => "not measured (no metrics configured)".to_owned(),
    };
    let rollback_reason = match (status, &report.rollback) {
        ("rolled_back", _) => {
            monitoring.map(|m| m.reason.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| report.reason.clone())
        }
        (_, Some(rollback)) => rollback.detail.clone(),
        _ => String::new(),
    };
    let current = if status == "success" {
        run.version.clone()
    } else {
        report.previous_version.clone().unwrap_or_else(|| "none".to_owned())
    };
    let body = json!({
        "seed": {
            "status": status.to_uppercase(),
            "duration": duration,
            "deployer": format!("{} (DevOps agent)", config.agent.name),
            "previous_version": report.previous_version.clone().unwrap_or_else(|| "none (first deployment)".to_owned()),
            "pre_health": if baseline.is_some() { format!("baseline before the deploy: {}", sample_text(baseline.as_ref())) } else { "no baseline (no metrics configured)".to_owned() },
            "timeline": timeline,
            "verification": rows,
            "current_version": current,
            "key_metrics": sample_text(last.as_ref()),
            "rollback_required": !rollback_reason.is_empty(),
            "rollback_reason": rollback_reason,
        }
    });
    (front, body)
}

/// The report's next steps for a release whose deployment ended `status`.
fn next_steps(status: &str) -> Vec<String> {
    match status {
        "success" => {
            vec!["Post-deploy monitoring passed; record the deployed product and feedback channels".to_owned()]
        }
        "rolled_back" => vec![
            "The release was rolled back; the previous release serves users".to_owned(),
            "Fix the failure named in the escalation, then ship a new version".to_owned(),
        ],
        _ => vec!["Fix the failure named in the escalation, then re-run the deployment".to_owned()],
    }
}

fn verification(run: &mut NodeRun<'_>, environment: &str) -> Result<Outcome, NodeError> {
    let env = EnvConfig::load(&run.ws.config, environment).map_err(|e| NodeError::new("environment", e))?;
    // A production deploy verifies its release in the same run; a verification task for the
    // same version then has nothing left to watch.
    if let Ok(Lookup::Found(r15)) = release::find(run.ws, "R15-verification-result.md", &run.release())
        && r15.field("version").is_some_and(|v| release::same_version(v, &run.version))
        && r15.field("status") == Some("success")
    {
        run.summary = format!(
            "{} was verified in {environment} by run {} ({})",
            run.version,
            r15.field("run_id").unwrap_or("?"),
            r15.file
        );
        run.inputs.push(r15);
        return Ok(Outcome::Done);
    }
    let _lock = match lock_environment(run, &env)? {
        Ok(lock) => lock,
        Err(held) => return Ok(Outcome::Blocked { reason: held, escalate: false }),
    };
    let mut vars = run.env_vars(environment);
    vars.push(("OPSFLOW_VERSION".into(), run.version.clone()));
    let mut journal = match Journal::load(run.ws, &env.name).map_err(|e| NodeError::new("journal", e))? {
        Some(journal) if journal.task == run.task_id() && journal.phase == Phase::Paused => {
            return match resume_paused(run, &env, journal, &vars)? {
                Resumed::Finished(Outcome::Deployed) => Ok(Outcome::Done),
                Resumed::Finished(outcome) => Ok(outcome),
                // Only the monitoring period pauses a verification.
                Resumed::Continue(_) => Ok(Outcome::Done),
            };
        }
        Some(journal) => return Ok(Outcome::Blocked { reason: other_rollout(&env, &journal), escalate: false }),
        None => {
            let mut journal = new_journal(run, &env, Phase::Verifying);
            let history = env.history(run.ws);
            let live = history.deployments.iter().rev().find(|d| d.status == "good");
            if let Some(live) = live {
                journal.run_id = live.run_id.clone();
                journal.migrated = live.migrated;
                journal.slot = Some(live.dir.clone()).filter(|d| !d.is_empty());
            }
            journal.save(run.ws).map_err(|e| NodeError::new("journal", e))?;
            journal
        }
    };
    let outcome = match verify(run, &env, &mut journal, &vars)? {
        Verified::Passed(monitoring) => {
            run.summary = monitoring.reason;
            Outcome::Done
        }
        Verified::Paused(monitoring) => {
            let reason = monitoring.reason.clone();
            return pause(run, &env, journal, "monitoring period", &reason);
        }
        Verified::Interrupted(monitoring) => {
            Outcome::Failed { step: "verification".into(), reason: monitoring.reason, log: String::new() }
        }
        Verified::RolledBack(monitoring, rollback) if rollback.success => {
            Outcome::RolledBack { reason: monitoring.reason }
        }
        Verified::RolledBack(_, rollback) => {
            Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() }
        }
    };
    Journal::remove(run.ws, &env.name);
    Ok(outcome)
}

/// The environment a Rollback_Deployment task rolls back: the task's `environment`, else its
/// R17's, else production.
pub fn rollback_environment(task: &Value, decision: Option<&Artifact>) -> String {
    task.get("environment")
        .and_then(Value::as_str)
        .or_else(|| decision.and_then(|d| d.field("environment")))
        .unwrap_or("production")
        .to_owned()
}

/// Whether a Rollback_Deployment task acts on a human's R17 (it was filed from one: its
/// `source` names the file) rather than on its own request (`opsflow rollback`, a hand-written
/// task).
pub fn requested_rollback(task: &Value) -> bool {
    task.get("source").and_then(Value::as_str).is_some_and(|source| source.contains("R17-rollback-decision"))
}

/// The version a Rollback_Deployment task rolls back to, when it names one: its
/// `target_version`, or its `version` when that is not the live one.
fn rollback_target(task: &Value, live: Option<&str>) -> Option<String> {
    let field = |key: &str| task.get(key).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
    if let Some(target) = field("target_version") {
        return Some(target.to_owned());
    }
    if requested_rollback(task) {
        // An R17's `version` is the release it decides about, the one to undo.
        return None;
    }
    field("version").filter(|v| live.is_none_or(|live| !release::same_version(v, live))).map(str::to_owned)
}

/// Rollback_Deployment: a human asked for it, in R17 (`decision: rollback`) or with
/// `opsflow rollback ENV [--to VERSION]`, outside any paused rollout. Afterwards every record
/// of the release that was undone says so: its production task is `rolled_back`, and
/// `deployment-report.json`, `Deploy-<UNIT_ID>.md` and the completion signal no longer claim
/// success.
fn rollback_deployment(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let decision = if requested_rollback(run.task) {
        run.inputs.iter().find(|a| a.file.contains("R17-rollback-decision")).cloned()
    } else {
        None
    };
    let environment = rollback_environment(run.task, decision.as_ref());
    let env = EnvConfig::load(&run.ws.config, &environment).map_err(|e| NodeError::new("environment", e))?;
    let _lock = match lock_environment(run, &env)? {
        Ok(lock) => lock,
        Err(held) => return Ok(Outcome::Blocked { reason: held, escalate: false }),
    };
    if let Some(journal) = Journal::load(run.ws, &env.name).map_err(|e| NodeError::new("journal", e))? {
        return Ok(Outcome::Blocked { reason: other_rollout(&env, &journal), escalate: false });
    }
    let field = |key: &str| run.task.get(key).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
    let by = decision
        .as_ref()
        .and_then(|d| d.field("decided_by"))
        .filter(|b| !b.trim().is_empty())
        .or_else(|| field("requested_by"))
        .unwrap_or("a human")
        .to_owned();
    let reason = decision
        .as_ref()
        .and_then(|d| d.field("reason").map(str::to_owned))
        .or_else(|| field("reason").map(str::to_owned))
        .unwrap_or_else(|| format!("requested by task {}", run.task_id()));
    let why = format!("{by} asked for a rollback: {reason}");
    let live = env.history(run.ws).deployments.iter().rev().find(|d| d.status == "good").map(|d| d.version.clone());
    let live = env.local(&run.ws.root).map_or(live, |local| local.live_version());
    let target = rollback_target(run.task, live.as_deref());
    let mut vars = run.env_vars(&environment);
    vars.push(("OPSFLOW_VERSION".into(), run.version.clone()));
    let rollback = deploy::rollback_to(run.ws, &run.runner, &env, &vars, None, target.as_deref());
    let sha = decision.as_ref().map(|d| d.sha256.clone()).unwrap_or_default();
    write_rollback_result(run, &rollback, &why, &sha)?;
    if !rollback.success {
        return Ok(Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() });
    }
    if let Some((unit, version)) = rollback.undone.clone().filter(|(_, v)| !v.is_empty()) {
        let undone = Release::new(unit, version);
        patch_report_of(run, &undone, "rolled_back", &why);
        let restored = rollback.restored.clone().unwrap_or_else(|| "nothing (the environment was taken down)".into());
        mark_deploy_report_rolled_back(run, &undone, &why, &restored);
        run.rolled_back.push(undone);
    }
    run.summary = format!("rolled back {environment}: {}", rollback.detail);
    Ok(Outcome::Done)
}

fn feedback(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let mut running = Vec::new();
    for name in run.ws.config.environments.keys() {
        let Ok(env) = EnvConfig::load(&run.ws.config, name) else { continue };
        let (live, version) = match env.local(&run.ws.root) {
            Some(local) => (local.live_dir().unwrap_or_default(), local.live_version().unwrap_or_default()),
            None => ("see the environment's own records".to_owned(), String::new()),
        };
        running.push(json!({"environment": name, "provider": env.provider, "strategy": env.strategy(), "live": live, "version": version}));
    }
    let candidate = run.inputs.iter().find(|a| a.file.contains("D21-release-candidate")).map(|a| a.file.clone());
    let extra = json!({"running": running, "release_candidate": candidate});
    run.write_markdown("D22-deployed-product.md", None, "completed", extra.clone())?;
    run.write_markdown("D23-feedback-channels.md", None, "completed", extra)?;
    run.summary = format!(
        "recorded {} environments and {} feedback channels",
        running.len(),
        feedback_list(&run.ws.config.feedback).len()
    );
    Ok(Outcome::Done)
}

/// Makes a run directory path for a run id.
pub fn run_dir(ws: &Workspace, run_id: &str) -> PathBuf {
    ws.path(&ws.config.paths.runtime).join("runs").join(run_id)
}
