//! The command line (clap), as docs/reference.md describes it. Every option and subcommand has
//! its help text here, from the doc comments.
//!
//! `--agent` is the global "act as this agent"; the agent a task belongs to is `--owner` in
//! `tasks add` and `tasks list`. The old spelling, `tasks add --agent A`, reaches the global
//! option (clap allows no alias that shadows a global), so `tasks` takes it as the owner when
//! `--owner` is missing (see `cmd/tasks.rs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "opsflow",
    version,
    about = "The DevOps stage of a file-based multi-agent workflow",
    after_help = "Start with `opsflow init` in a new repository, or `opsflow demo` to watch the whole pipeline run."
)]
pub struct Cli {
    /// The workspace directory, which must hold docs/workflow/tasks.json or project-config.json
    /// (default: the nearest directory from the current one upward that does). For `init`, where
    /// to create it; for `demo`, where to copy the sample (default: a new temporary directory)
    #[arg(short = 'C', long = "dir", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The config file, relative to the workspace (default: project-config.json)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Act as this agent instead of the configured one (`agent.name`); it then owns the tasks
    /// assigned to NAME
    #[arg(long, global = true, value_name = "NAME")]
    pub agent: Option<String>,
    /// The format of the log lines on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// One level more logging than the command's default, repeated for more (`watch -v` logs at debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a workspace that validates (existing files are kept)
    Init {
        /// Where to create it (default: the workspace directory)
        dir: Option<PathBuf>,
    },
    /// Check every workflow file and list every problem
    Validate {
        /// Print the diagnostics as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Where the workflow stands: nodes, owned tasks and what blocks them
    Status {
        /// Print the status as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Read and write tasks.json safely (under its lock, keeping every other byte)
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Reconcile until nothing more is runnable, then exit
    Run {
        /// Print the plan (tasks, nodes, gates and why) and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Print what ran (or would run) as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// The daemon: watch the workspace and reconcile on every change
    Watch {
        /// Serve /healthz and Prometheus /metrics on this address (default: nowhere)
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// A human's rollback: file a `deployment_rollback` task for ENV and run it like any other
    Rollback {
        /// The environment to roll back (e.g. production)
        environment: String,
        /// Roll back to this version (a good release kept in the environment) instead of the
        /// last good release before the live one; `none` takes the environment down on purpose
        /// (nothing stays live). A release that cannot be restored is refused (exit 2) with the
        /// list of those that can
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Why, recorded in the task, R18 and the audit log
        #[arg(long)]
        reason: Option<String>,
        /// Print what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// What an environment ran, newest first: each deployment's release (unit and version),
    /// status, commit, approver, the release it replaced and the rollbacks that undid it
    History {
        /// The environment (e.g. production)
        environment: String,
        /// Print the record's rows as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Approve the release that waits for a human (the one `opsflow status` names): sets
    /// `status: approved`, `approved_by` and `approved_at` in its approval file, then carries it out
    Approve {
        /// The unit to approve (needed when several releases wait)
        unit: Option<String>,
        /// The version of that unit (needed when several of its versions wait)
        version: Option<String>,
        /// Who approves (default: git's user.name or user.email, else $USER); must be one of
        /// devops.approvers when that list is set
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// A note kept in the approval's front matter as `note`
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Print what was written and what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Hold the release that waits for a human: sets `status: hold`, `held_by` and `reason` in
    /// its approval file
    Hold {
        /// The unit to hold (needed when several releases wait)
        unit: Option<String>,
        /// The version of that unit (needed when several of its versions wait)
        version: Option<String>,
        /// Who holds it (default: git's user.name or user.email, else $USER); must be one of
        /// devops.approvers when that list is set
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Why, kept in the approval's front matter as `reason`
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Print what was written and what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Let a paused rollout of ENV go on: sets `decision: proceed` and `decided_by` in its R17
    Promote {
        /// The environment whose rollout is paused (e.g. production)
        environment: String,
        /// Who decides (default: git's user.name or user.email, else $USER); must be one of
        /// devops.approvers when that list is set
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Why, kept in R17 as `reason` (default: R17's reason stays)
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Print what was written and what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Roll a paused rollout of ENV back: sets `decision: rollback`, `decided_by` and `reason` in its R17
    Abort {
        /// The environment whose rollout is paused (e.g. production)
        environment: String,
        /// Who decides (default: git's user.name or user.email, else $USER)
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Why, kept in R17 as `reason`
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Print what was written and what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Put a failed or blocked task back to `pending` and run it again (a failed deployment of
    /// a built release is refused: ship a new version)
    Retry {
        /// The task's id
        task: String,
        /// Who retries it, kept as `retried_by` (default: git's user.name or user.email, else $USER)
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Print what was written and what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Trust the commands and overrides as they are now: a change that git sync brought in to
    /// a command of the config (dev.setup, release.build, an environment's commands, health
    /// checks, metrics), to workflow.json or to schemas/ or templates/ holds the nodes that
    /// would use it until a person runs this. Records the digests in .opsflow/trusted.json
    /// and who trusted them in the audit log; `opsflow status` lists what waits. Review the
    /// change first (`git log -p`, the human request shows old → new and who committed it)
    Trust {
        /// Who trusts it (default: git's user.name or user.email, else $USER)
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Print what was trusted as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Lock ENV (a freeze): no deploy starts there until `opsflow unlock ENV`; rollbacks still
    /// run. Who, when and why are kept in .opsflow/env-locks/ENV.json and the environment's record
    Lock {
        /// The environment to lock (e.g. production)
        environment: String,
        /// Why, shown in the reason of every deploy that waits and in `opsflow status`
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Who locks it (default: git's user.name or user.email, else $USER)
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Print the lock as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// Lift the lock of ENV and start what waited for it (exit 2 when ENV is not locked)
    Unlock {
        /// The environment to unlock (e.g. production)
        environment: String,
        /// Who unlocks it (default: git's user.name or user.email, else $USER)
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Print what was lifted and what the run did as one JSON document on stdout
        #[arg(long)]
        json: bool,
    },
    /// The one thing that waits for a person, and the command that answers it
    Next {
        /// Print the task, the step and the command as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// The workflow graph with the current position
    Graph {
        /// Mermaid (for markdown) or Graphviz dot
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// The git merge driver for tasks.json and state.json: git runs it as
    /// `opsflow merge-driver %O %A %B %P` and finds the result in OURS (exit 0 clean, 1 conflicts)
    MergeDriver {
        /// The common ancestor's version (%O)
        base: PathBuf,
        /// Our version (%A); the merged result is written here
        ours: PathBuf,
        /// Their version (%B)
        theirs: PathBuf,
        /// The file's path in the repository (%P), which says whether it is tasks.json or state.json
        path: Option<PathBuf>,
    },
    /// Copy the built-in sample workspace to --dir DIR (default: a new temporary directory) and
    /// run the whole pipeline there
    Demo {
        /// Also run the workflow's other agents as agent nodes: a scripted merge agent writes
        /// R04, a scripted QA agent writes the QA reports (refused once, then fixed from the
        /// diagnostics), and the DevOps nodes follow up to the production approval
        #[arg(long)]
        agents: bool,
    },
}

impl Cli {
    /// The workspace directory: `-C`/`--dir`, else the current directory.
    pub fn workspace_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart
    Mermaid,
    /// A Graphviz digraph
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks (id, status, type, owner, title), filtered
    List(ListArgs),
    /// Append a task; prints its id
    Add(AddArgs),
    /// Change fields of a task, keeping every other byte of the file
    Update(UpdateArgs),
    /// Free the claim of an `in_progress` task whose runner is gone: back to `pending`
    Release(ReleaseArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only tasks this runner owns (its agent name or alias, and a DevOps type)
    #[arg(long)]
    pub mine: bool,
    /// Only tasks with this status (pending, in_progress, blocked, completed, ...)
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Only tasks whose `agent` field is exactly this (`--agent` without `--mine` still filters
    /// the same way, as it did before `--owner`)
    #[arg(long, value_name = "AGENT")]
    pub owner: Option<String>,
    /// Only tasks of this type
    #[arg(long = "type", value_name = "T")]
    pub kind: Option<String>,
    /// Print the tasks as one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    /// What the task is about
    #[arg(long)]
    pub title: String,
    /// The agent the task is for (its `agent` field), e.g. `devops`; required (`--agent` still
    /// works here, as it was spelled before `--owner`)
    #[arg(long, value_name = "AGENT")]
    pub owner: Option<String>,
    /// The task type (its `type` field), e.g. `release_build`
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: String,
    /// The task id (default: the next free TASK-NNN)
    #[arg(long)]
    pub id: Option<String>,
    /// Set a field: `key=text` sets a string, `key:=json` sets any JSON value
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The id of the task to change
    pub id: String,
    /// Set a field: `key=text` sets a string, `key:=json` sets any JSON value
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Remove a field
    #[arg(long = "unset", value_name = "KEY")]
    pub unset: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The id of the task (status `in_progress`) whose claim to free
    pub id: String,
}
