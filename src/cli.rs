//! The command line (clap), as PRODUCT.md §8 describes it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "opsflow", version, about = "The DevOps stage of a file-based multi-agent workflow")]
pub struct Cli {
    /// The workspace directory (normally the repository root; default: the current directory).
    /// For `demo`, where to copy the sample (default: a new temporary directory)
    #[arg(short = 'C', long = "dir", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The config file, relative to the workspace (default: project-config.json)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Act as this agent instead of the configured one
    #[arg(long, global = true, value_name = "NAME")]
    pub agent: Option<String>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (repeat for more)
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
    Text,
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
        #[arg(long)]
        json: bool,
    },
    /// Where the workflow stands: nodes, owned tasks and what blocks them
    Status {
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
        #[arg(long)]
        json: bool,
    },
    /// The daemon: watch the workspace and reconcile on every change
    Watch {
        /// Serve /healthz and Prometheus /metrics on this address (default: nowhere)
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// The workflow graph with the current position
    Graph {
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
    Demo,
}

impl Cli {
    /// The workspace directory: `-C`/`--dir`, else the current directory.
    pub fn workspace_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks
    List(ListArgs),
    /// Append a task
    Add(AddArgs),
    /// Change fields of a task
    Update(UpdateArgs),
    /// Free the claim of an `in_progress` task whose runner is gone: back to `pending`
    Release(ReleaseArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tasks this runner owns (its agent name or alias, and a DevOps type)
    #[arg(long)]
    pub mine: bool,
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    #[arg(long, value_name = "A")]
    pub agent: Option<String>,
    #[arg(long = "type", value_name = "T")]
    pub kind: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    pub title: String,
    #[arg(long)]
    pub agent: String,
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
    pub id: String,
}
