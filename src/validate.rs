//! Checking the whole workspace: every workflow file, every problem, not only the first.
//!
//! Each file is read defensively (size, encoding, conflict markers, symlinks), parsed, and
//! checked against its schema; `tasks.json` also gets the checks a schema cannot express
//! (unique ids, known `depends_on`, no cycles). Problems in one file never stop the others.

use std::collections::HashMap;
use std::fs;

use serde_json::Value;

use crate::schema::SchemaName;
use crate::store::tasks::{FxMap, LayoutError};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::read;

/// What `validate` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files that exist and were checked, in order.
    pub checked: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// Things worth fixing that do not make the workspace invalid (the exit code stays).
    pub warnings: Vec<String>,
}

/// A JSON input, loaded and checked.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The parsed value when the file exists and parses (even if the schema rejects parts).
    pub value: Option<Value>,
    pub text: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    fn failed(diagnostic: Diagnostic) -> Loaded {
        Loaded { diagnostics: vec![diagnostic], ..Loaded::default() }
    }
}

/// Reads, parses and schema-checks a JSON file; a missing file gives an empty `Loaded`.
pub fn load_json(ws: &Workspace, relative: &str, schema: SchemaName) -> Loaded {
    match ws.read_text(relative) {
        Ok(Some(text)) => check_json(ws, relative, text, schema),
        Ok(None) => Loaded::default(),
        Err(diagnostic) => Loaded::failed(diagnostic),
    }
}

/// Parses and schema-checks the text of a JSON file.
fn check_json(ws: &Workspace, relative: &str, text: String, schema: SchemaName) -> Loaded {
    let value = match read::parse_json(relative, &text) {
        Ok(value) => value,
        Err(diagnostic) => return Loaded { text: Some(text), ..Loaded::failed(diagnostic) },
    };
    let diagnostics = ws.schemas.validate(schema, relative, &value).into_iter().map(|d| d.locate_in(&text)).collect();
    Loaded { value: Some(value), text: Some(text), diagnostics }
}

/// Loads `tasks.json` with the schema and the cross-entry checks (read again once settled if
/// it is being rewritten in place, see [`Workspace::read_text_settled`]).
pub fn load_tasks(ws: &Workspace) -> Loaded {
    let relative = ws.config.paths.tasks.clone();
    match ws.read_text_settled(&relative, |text| read::parse_json(&relative, text).is_ok()) {
        Ok(Some(text)) => check_tasks(ws, text),
        Ok(None) => Loaded::default(),
        Err(diagnostic) => Loaded::failed(diagnostic),
    }
}

/// [`load_tasks`] on text already read.
fn check_tasks(ws: &Workspace, text: String) -> Loaded {
    let relative = ws.config.paths.tasks.clone();
    let mut loaded = check_json(ws, &relative, text, SchemaName::Tasks);
    if let (Some(value), Some(text)) = (&loaded.value, &loaded.text) {
        let selection = ws.task_selection();
        if loaded.diagnostics.is_empty()
            && let Err(error @ LayoutError::Shape(_)) = crate::store::tasks::scan_in(text, &selection, |_| false)
        {
            // A shape the schema allows but opsflow cannot work in: a Task Master tag that is
            // not in the file, or whose current tag cannot be read.
            loaded.diagnostics.push(layout_diagnostic(&relative, text, error));
            return loaded;
        }
        let Some(entries) = crate::task::entries(value, &selection) else { return loaded };
        let beads = crate::integrations::beads::load(ws);
        let mut found =
            task_graph_problems(&relative, &entries.prefix, &entries.list, entries.subtasks.as_ref(), &|id| {
                beads.get(id).is_some()
            });
        if entries.subtasks.is_some() {
            // Task Master's tasks pass its own shape; those of this runner must also be tasks
            // opsflow can run, as they read once decoded.
            for (index, entry) in entries.list.iter().enumerate() {
                if crate::task::owned_entry(&ws.config, entry) {
                    found.extend(ws.schemas.validate(SchemaName::Task, &relative, entry).into_iter().map(|mut d| {
                        d.pointer = Some(format!("{}/{index}{}", entries.prefix, d.pointer.as_deref().unwrap_or("")));
                        d
                    }));
                }
            }
        }
        loaded.diagnostics.extend(found.into_iter().map(|d| d.locate_in(text)));
    }
    loaded
}

/// Duplicate ids, `depends_on` naming unknown tasks, and dependency cycles.
/// `subtasks` holds the subtask ids of a Task Master file, which a dependency may name too;
/// `elsewhere` says whether an id is known outside the file (a beads issue).
fn task_graph_problems(
    file: &str,
    prefix: &str,
    tasks: &[Value],
    subtasks: Option<&HashMap<String, String>>,
    elsewhere: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let ids = tasks.iter().enumerate().map(|(index, task)| (index, task.get("id").and_then(Value::as_str)));
    let (first, mut problems) = duplicate_ids(file, prefix, ids.len(), ids);
    let entries: Vec<(usize, &Value)> = tasks.iter().enumerate().collect();
    problems.extend(dependency_problems(file, prefix, &entries, &first, subtasks, elsewhere));
    problems
}

/// The first entry of each id, and a problem for every later entry with the same id.
fn duplicate_ids<'t>(
    file: &str,
    prefix: &str,
    count: usize,
    ids: impl Iterator<Item = (usize, Option<&'t str>)>,
) -> (FxMap<&'t str, usize>, Vec<Diagnostic>) {
    let mut problems = Vec::new();
    let mut first: FxMap<&str, usize> = FxMap::with_capacity_and_hasher(count, Default::default());
    for (index, id) in ids {
        let Some(id) = id else { continue };
        if let Some(&earlier) = first.get(id) {
            problems.push(
                Diagnostic::new(
                    file,
                    Kind::DuplicateId,
                    format!("duplicate task id `{id}` (also used at {prefix}/{earlier})"),
                )
                .pointer(format!("{prefix}/{index}/id")),
            );
        } else {
            first.insert(id, index);
        }
    }
    (first, problems)
}

/// `depends_on` entries naming no task (nor anything `elsewhere` knows: a beads issue), and
/// dependency cycles, among `entries` (entry index in the file, entry); `first` gives the entry
/// of every id in the file. Every dependency of an entry that is in the file must be among
/// `entries` for its cycles to be found. In a Task Master file (`subtasks` is its subtasks'
/// ids) a dependency may name a subtask, and the place of a dependency is in `dependencies`,
/// the field Task Master writes.
fn dependency_problems(
    file: &str,
    prefix: &str,
    entries: &[(usize, &Value)],
    first: &FxMap<&str, usize>,
    subtasks: Option<&HashMap<String, String>>,
    elsewhere: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let field = if subtasks.is_some() { "dependencies" } else { "depends_on" };
    let mut problems = Vec::new();
    let deps = |task: &Value| -> Vec<String> {
        task.get("depends_on")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let id_of = |task: &Value| task.get("id").and_then(Value::as_str).map(str::to_owned);
    for (index, task) in entries {
        for (k, dep) in deps(task).iter().enumerate() {
            if !first.contains_key(dep.as_str()) && !subtasks.is_some_and(|s| s.contains_key(dep)) && !elsewhere(dep) {
                problems.push(
                    Diagnostic::new(
                        file,
                        Kind::UnknownDependency,
                        format!("depends on `{dep}`, which no task in this file has as its id"),
                    )
                    .pointer(format!("{prefix}/{index}/{field}/{k}")),
                );
            }
        }
    }
    // Depth-first search for cycles, iterative so a long chain cannot overflow the stack.
    // Nodes are positions in `entries`.
    let position: HashMap<usize, usize> = entries.iter().enumerate().map(|(at, (index, _))| (*index, at)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; entries.len()];
    let children = |at: usize| {
        deps(entries[at].1)
            .iter()
            .filter_map(|d| first.get(d.as_str()).and_then(|index| position.get(index)).copied())
            .rev()
            .collect::<Vec<_>>()
    };
    for root in 0..entries.len() {
        if marks[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, Vec<usize>)> = Vec::new();
        marks[root] = Mark::Open;
        stack.push((root, children(root)));
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) if marks[next] == Mark::New => {
                    marks[next] = Mark::Open;
                    stack.push((next, children(next)));
                }
                Some(next) if marks[next] == Mark::Open => {
                    let start = stack.iter().position(|(n, _)| *n == next).expect("an open node is on the stack");
                    let mut names: Vec<String> =
                        stack[start..].iter().map(|(n, _)| id_of(entries[*n].1).unwrap_or_default()).collect();
                    names.push(id_of(entries[next].1).unwrap_or_default());
                    problems.push(
                        Diagnostic::new(
                            file,
                            Kind::DependencyCycle,
                            format!("dependency cycle: {}", names.join(" -> ")),
                        )
                        .pointer(format!("{prefix}/{}/{field}", entries[next].0)),
                    );
                }
                Some(_) => {}
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    problems
}

/// `tasks.json` as the engine reads it on every pass: without decoding the whole file.
#[derive(Debug, Default)]
pub struct TaskList {
    /// Whether the file is a task list that can be acted on; when not, nothing may run and
    /// `diagnostics` says why (nothing at all when the file does not exist).
    pub readable: bool,
    /// `/tasks`, `` (a bare array) or `/TAG/tasks` (Task Master): entry `i` is at `{prefix}/{i}`.
    pub prefix: String,
    /// The status, by id (the first entry of an id), of what the kept entries and those they
    /// reach name in `depends_on`, and of the ids `remember` asked for: not of every entry,
    /// so that what a pass holds grows with the work it may do, not with the file.
    pub statuses: HashMap<String, String>,
    /// The entries `keep` selected, decoded: (entry index, entry).
    pub kept: Vec<(usize, Value)>,
    /// How many entries this runner owns (`workflow::owns`) have each status, for `/metrics`.
    pub owned_by_status: std::collections::BTreeMap<String, u64>,
    /// Problems of the file as a whole (no pointer into an entry) and of the kept entries
    /// and what they depend on; the pointers say which.
    pub diagnostics: Vec<Diagnostic>,
    /// The file's version just before it was read: whoever compares it with the file's
    /// version later knows whether the file was written since.
    pub stamp: Option<crate::store::file::Stamp>,
    /// The text as read, with where the kept entries are in it, when it may stand for the
    /// file's version (`store::file::Known`): an edit of a kept entry made while the file is
    /// still at that version starts from it instead of reading and scanning the file again.
    pub known: Option<KnownTasks>,
}

/// `tasks.json` as one pass read it (see [`TaskList::known`]).
#[derive(Debug)]
pub struct KnownTasks {
    pub file: crate::store::file::Known,
    pub layout: crate::store::tasks::Layout,
    pub selection: crate::store::tasks::Selection,
    /// The id, entry index and span of each kept entry.
    pub entries: Vec<(String, usize, crate::store::json::Span)>,
}

/// Reads `tasks.json` with the span scanner (every byte checked as JSON, no tree built) and
/// decodes and checks only the entries `keep` selects: the task schema, their `depends_on`,
/// cycles through them. Duplicate ids are found among all entries. The cost of a pass thus
/// grows with the entries an agent owns, not with the file. A file that is not a task list
/// goes through the full loader, so its problems read exactly as `validate` says them.
/// `remember` names the ids, besides those the kept entries depend on, whose status the
/// caller looks up in [`TaskList::statuses`].
pub fn load_task_list(
    ws: &Workspace,
    keep: impl Fn(&crate::store::tasks::TaskHead<'_>) -> bool + Sync,
    remember: impl Fn(&str) -> bool,
) -> TaskList {
    let relative = ws.config.paths.tasks.clone();
    let selection = ws.task_selection();
    let stamp = crate::store::file::Stamp::of(&ws.path(&relative));
    let (read, known) = match crate::store::file::Known::read(&ws.path(&relative), || ws.read_text(&relative)) {
        Ok(read) => read,
        Err(diagnostic) => return TaskList { diagnostics: vec![diagnostic], ..TaskList::default() },
    };
    let Some(text) = known.as_ref().map(|k| k.text.as_str()).or(read.as_deref()) else { return TaskList::default() };
    if let Ok((mut list, layout, spans)) = task_list_from(ws, &relative, &selection, text, &keep, &remember) {
        list.known = known.map(|file| {
            let entries = list
                .kept
                .iter()
                .zip(spans)
                .filter_map(|((index, task), span)| Some((task.get("id")?.as_str()?.to_owned(), *index, span)))
                .collect();
            KnownTasks { file, layout, selection: selection.clone(), entries }
        });
        list.stamp = stamp;
        return list;
    }
    // Not a task list as read: it may be being rewritten in place, so it is read again once
    // it has settled (only here, so a valid file is scanned once).
    let text = match ws
        .read_text_settled(&relative, |text| crate::store::tasks::scan_in(text, &selection, |_| false).is_ok())
    {
        Ok(Some(text)) => text,
        Ok(None) => return TaskList::default(),
        Err(diagnostic) => return TaskList { diagnostics: vec![diagnostic], ..TaskList::default() },
    };
    match task_list_from(ws, &relative, &selection, &text, &keep, &remember) {
        Ok((list, _, _)) => list,
        Err(error) => TaskList { diagnostics: unreadable_tasks(ws, &text, error), ..TaskList::default() },
    }
}

/// [`load_task_list`] on text already read; the scan error when it is not a task list.
fn task_list_from(
    ws: &Workspace,
    relative: &str,
    selection: &crate::store::tasks::Selection,
    text: &str,
    keep: &(impl Fn(&crate::store::tasks::TaskHead<'_>) -> bool + Sync),
    remember: &impl Fn(&str) -> bool,
) -> Result<(TaskList, crate::store::tasks::Layout, Vec<crate::store::json::Span>), LayoutError> {
    let owns = |head: &crate::store::tasks::TaskHead<'_>| {
        crate::workflow::owns(&ws.config, head.agent.as_deref(), head.kind.as_deref())
    };
    // One walk: every entry's id, status and span, and the heads of the owned and kept ones.
    let (layout, heads, all) = crate::store::tasks::scan_index(text, selection, |head| owns(head) || keep(head))?;
    let prefix_text = layout.prefix(text);
    let prefix = prefix_text.as_str();
    let file = relative;
    let ids = all.iter().enumerate().map(|(index, e)| (index, e.id.as_deref()));
    let (first, mut diagnostics) = duplicate_ids(file, prefix, all.len(), ids);
    if !diagnostics.is_empty() {
        // Two tasks with one id make every edit by id ambiguous: nothing acts on such a file.
        let diagnostics = diagnostics.into_iter().map(|d| d.locate_in(text)).collect();
        return Ok((TaskList { diagnostics, ..TaskList::default() }, layout, Vec::new()));
    }
    let mut owned_by_status = std::collections::BTreeMap::new();
    for head in heads.iter().filter(|h| owns(h)) {
        *owned_by_status.entry(head.status.as_deref().unwrap_or("").to_owned()).or_default() += 1;
    }
    let mut kept: Vec<(usize, Value)> = Vec::new();
    let mut spans = Vec::new();
    for head in heads.iter().filter(|h| keep(h)) {
        match head.try_value(text) {
            Ok(task) => kept.push((head.index, task)),
            Err(error) => return Ok((undecodable(file, text, error), layout, Vec::new())),
        }
        spans.push(head.span);
    }
    drop(heads);
    for (index, task) in &kept {
        diagnostics.extend(ws.schemas.validate(SchemaName::Task, file, task).into_iter().map(|mut d| {
            d.pointer = Some(format!("{prefix}/{index}{}", d.pointer.as_deref().unwrap_or("")));
            d
        }));
    }
    // What the kept entries depend on, directly or not, decoded for the cycle search.
    let decode = |index: usize| -> Option<Result<Value, crate::store::json::SyntaxError>> {
        let entry = all.get(index)?;
        Some(crate::store::tasks::head_at(text, &layout, selection, index, entry.span).try_value(text))
    };
    let mut reached: Vec<(usize, Value)> = Vec::new();
    let mut seen: std::collections::HashSet<usize> = kept.iter().map(|(i, _)| *i).collect();
    let mut queue: Vec<usize> = Vec::new();
    let dependencies = |task: &Value| -> Vec<usize> {
        task.get("depends_on")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).filter_map(|d| first.get(d).copied()).collect())
            .unwrap_or_default()
    };
    for (_, task) in &kept {
        queue.extend(dependencies(task));
    }
    while let Some(index) = queue.pop() {
        if !seen.insert(index) {
            continue;
        }
        let task = match decode(index) {
            Some(Ok(task)) => task,
            Some(Err(error)) => return Ok((undecodable(file, text, error), layout, Vec::new())),
            None => continue,
        };
        queue.extend(dependencies(&task));
        reached.push((index, task));
    }
    let entries: Vec<(usize, &Value)> = kept.iter().chain(&reached).map(|(i, t)| (*i, t)).collect();
    // A Task Master task may depend on a subtask (`12.1`): its status is read from its task.
    let subtasks = layout.taskmaster().then(|| {
        let decoded: Vec<Value> = entries
            .iter()
            .flat_map(|(_, task)| task.get("depends_on").and_then(Value::as_array).into_iter().flatten())
            .filter_map(|dep| dep.as_str()?.split_once('.'))
            .filter_map(|(parent, _)| first.get(parent).and_then(|index| all.get(*index)))
            .filter_map(|entry| serde_json::from_str(entry.span.of(text)).ok())
            .collect();
        crate::task::subtask_statuses(&decoded)
    });
    let beads = crate::integrations::beads::load(ws);
    diagnostics
        .extend(dependency_problems(file, prefix, &entries, &first, subtasks.as_ref(), &|id| beads.get(id).is_some()));
    // The statuses a pass looks up: what the entries above depend on, and what `remember` names.
    let mut statuses = HashMap::new();
    let mut note = |id: &str, index: usize| {
        if let Some(entry) = all.get(index) {
            statuses.insert(id.to_owned(), entry.status.as_deref().unwrap_or_default().to_owned());
        }
    };
    for (_, task) in &entries {
        for dep in task.get("depends_on").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if let Some(&index) = first.get(dep) {
                note(dep, index);
            }
        }
    }
    for (&id, &index) in first.iter().filter(|(id, _)| remember(id)) {
        note(id, index);
    }
    statuses.extend(subtasks.into_iter().flatten());
    let diagnostics = diagnostics.into_iter().map(|d| d.locate_in(text)).collect();
    let list = TaskList {
        readable: true,
        prefix: prefix_text,
        statuses,
        kept,
        owned_by_status,
        diagnostics,
        stamp: None,
        known: None,
    };
    Ok((list, layout, spans))
}

/// A task list none of which may be acted on, because an entry the scanner passed could not
/// be decoded.
fn undecodable(file: &str, text: &str, error: crate::store::json::SyntaxError) -> TaskList {
    TaskList { diagnostics: vec![layout_diagnostic(file, text, LayoutError::Syntax(error))], ..TaskList::default() }
}

/// What is wrong with a `tasks.json` the span scanner refused (`error`), said as `validate`
/// says it: the full loader runs on the same text, so `validate`, `status`, `run` and
/// `tasks list` report one broken file with the same diagnostics. The scanner's own error
/// stands in should the loader find nothing wrong.
pub fn unreadable_tasks(ws: &Workspace, text: &str, error: LayoutError) -> Vec<Diagnostic> {
    let mut diagnostics = check_tasks(ws, text.to_owned()).diagnostics;
    if diagnostics.is_empty() {
        diagnostics.push(layout_diagnostic(&ws.config.paths.tasks, text, error));
    }
    diagnostics
}

/// Where a task-list scan error is, as users read it.
pub fn layout_diagnostic(file: &str, text: &str, error: LayoutError) -> Diagnostic {
    match error {
        LayoutError::Syntax(e) => {
            if let Some(conflict) = read::conflict_diagnostic(file, text) {
                return conflict;
            }
            let (line, column) = crate::store::json::line_col(text, e.offset);
            Diagnostic::new(file, Kind::Syntax, format!("invalid JSON: {}", e.message)).at(line, column)
        }
        LayoutError::Shape(message) => Diagnostic::new(file, Kind::Schema, message).pointer(""),
    }
}

/// A markdown input, loaded and checked.
#[derive(Debug, Default)]
pub struct LoadedMarkdown {
    pub doc: Option<read::MarkdownDoc>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads a markdown file and checks its front matter against `schema` when given.
pub fn load_markdown(ws: &Workspace, relative: &str, schema: Option<SchemaName>) -> LoadedMarkdown {
    let text = match ws.read_text(relative) {
        Ok(Some(text)) => text,
        Ok(None) => return LoadedMarkdown::default(),
        Err(diagnostic) => return LoadedMarkdown { doc: None, diagnostics: vec![diagnostic] },
    };
    let doc = match read::parse_markdown(relative, &text) {
        Ok(doc) => doc,
        Err(diagnostic) => return LoadedMarkdown { doc: None, diagnostics: vec![diagnostic] },
    };
    let mut diagnostics = Vec::new();
    if let Some(schema) = schema {
        match &doc.front_matter {
            Some(front_matter) => {
                for mut d in ws.schemas.validate(schema, relative, front_matter) {
                    d.message = format!("front matter: {}", d.message);
                    // The line of the offending key (a missing one: the opening `---`).
                    if d.line.is_none()
                        && let Some(pointer) = d.pointer.clone()
                    {
                        let (line, column) = read::front_matter_position(&text, &pointer)
                            .or_else(|| read::front_matter_position(&text, ""))
                            .unwrap_or((1, 1));
                        d = d.at(line, column);
                    }
                    diagnostics.push(d);
                }
            }
            None => diagnostics.push(
                Diagnostic::new(relative, Kind::FrontMatter, "has no front matter; it needs a `---` block at the top")
                    .at(1, 1),
            ),
        }
    }
    LoadedMarkdown { doc: Some(doc), diagnostics }
}

/// The schema an artifact's front matter is checked against, from its file name.
pub fn artifact_schema(file_name: &str) -> Option<SchemaName> {
    let stem = file_name.strip_suffix(".md")?;
    if stem.starts_with("R17-rollback-decision") {
        Some(SchemaName::RollbackDecision)
    } else if stem.contains("-approval") {
        Some(SchemaName::Approval)
    } else {
        None
    }
}

/// Markdown files directly in `dir` (relative), sorted by name, without editors' droppings
/// (an Emacs lock `.#R12-prod-approval.md` is no approval).
fn markdown_files(ws: &Workspace, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(ws.path(dir))
        .into_iter()
        .flatten()
        .flatten()
        // Directories, FIFOs and the like with a markdown name are kept: reading them fails,
        // and that is reported where a report or an approval was expected.
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md") && !crate::workspace::editor_dropping(name))
        .collect();
    names.sort();
    names.into_iter().map(|name| format!("{}/{name}", dir.trim_end_matches('/'))).collect()
}

/// Checks every workflow file in the workspace.
pub fn validate_workspace(ws: &Workspace) -> Report {
    let mut report = Report::default();
    let paths = &ws.config.paths;
    if ws.path(&ws.config_label).exists() {
        report.checked.push(ws.config_label.clone());
    }
    report.diagnostics.extend(ws.config_problems.iter().cloned());

    let note = |report: &mut Report, file: &str, exists: bool, diagnostics: Vec<Diagnostic>| {
        if exists || !diagnostics.is_empty() {
            report.checked.push(file.to_owned());
        }
        report.diagnostics.extend(diagnostics);
    };

    let tasks = load_tasks(ws);
    report.warnings.extend(task_warnings(ws, &tasks));
    note(&mut report, &paths.tasks, tasks.text.is_some(), tasks.diagnostics);
    let beads = crate::integrations::beads::load(ws);
    report.warnings.extend(beads.warnings.iter().map(ToString::to_string));
    note(&mut report, &beads.file, beads.present, beads.problems);
    for file in crate::integrations::bmad::files(ws) {
        let problems = crate::integrations::bmad::load_file(ws, &file).err().unwrap_or_default();
        note(&mut report, &file, true, problems);
    }
    for (file, schema) in [
        (&paths.state, SchemaName::State),
        (&paths.workflow, SchemaName::Workflow),
        (&paths.qa_test_report, SchemaName::QaTestReport),
        (&paths.deployment_report, SchemaName::DeploymentReport),
        (&paths.completion_signal, SchemaName::CompletionSignal),
    ] {
        let mut loaded = load_json(ws, file, schema);
        if schema == SchemaName::Workflow && loaded.value.is_some() && loaded.diagnostics.is_empty() {
            // What the schema cannot say: the agent nodes' schemas, templates and output paths.
            loaded.diagnostics.extend(crate::workflow::graph::Graph::load(ws).err().unwrap_or_default());
        }
        note(&mut report, file, loaded.text.is_some(), loaded.diagnostics);
    }
    for file in markdown_files(ws, &paths.qa_reports) {
        let Some(unit) =
            file.rsplit('/').next().and_then(|n| n.strip_prefix("QA-Report-")).and_then(|n| n.strip_suffix(".md"))
        else {
            continue;
        };
        let mut loaded = load_markdown(ws, &file, Some(SchemaName::QaReport));
        if let Some(front_unit) = loaded
            .doc
            .as_ref()
            .and_then(|d| d.front_matter.as_ref())
            .and_then(|f| f.get("unit_id"))
            .and_then(Value::as_str)
            && front_unit != unit
            && !per_release_name(unit, front_unit, loaded.doc.as_ref().and_then(|d| d.front_matter.as_ref()))
            && loaded.diagnostics.is_empty()
        {
            loaded.diagnostics.push(
                Diagnostic::new(
                    &file,
                    Kind::Schema,
                    format!("front matter `unit_id` is `{front_unit}` but the file name says `{unit}`"),
                )
                .pointer("/unit_id"),
            );
        }
        note(&mut report, &file, true, loaded.diagnostics);
    }
    for dir in [&paths.artifacts, &paths.deployments] {
        for file in markdown_files(ws, dir) {
            let name = file.rsplit('/').next().unwrap_or_default();
            let loaded = load_markdown(ws, &file, artifact_schema(name));
            note(&mut report, &file, true, loaded.diagnostics);
        }
    }
    report.warnings.extend(crate::merge::setup::missing_driver(&ws.root));
    report
}

/// The warnings about `tasks.json` (see [`crate::engine::readiness::task_warnings`]) as
/// `validate` and `status` both print them, with the line and column of the field.
pub fn task_warnings(ws: &Workspace, tasks: &Loaded) -> Vec<String> {
    let selection = ws.task_selection();
    let Some(found) = tasks.value.as_ref().and_then(|v| crate::task::entries(v, &selection)) else {
        return Vec::new();
    };
    let (prefix, entries) = (found.prefix.as_str(), &found.list);
    // Only entries of a DevOps type can be warned about: only those are decoded.
    let decoded: Vec<(usize, crate::task::Task)> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.get("type").and_then(Value::as_str).is_some_and(crate::task::owned_type))
        .map(|(index, entry)| (index, crate::task::Task::from_value(entry.clone())))
        .collect();
    let warnings = crate::engine::readiness::task_warnings(
        &ws.config,
        &ws.config.paths.tasks,
        prefix,
        decoded.iter().map(|(index, task)| (*index, task)),
    );
    let text = tasks.text.as_deref().unwrap_or_default();
    warnings.into_iter().map(|w| w.locate_in(text).to_string()).collect()
}

/// The entries of `tasks.json` that fail the task schema, from a [`load_tasks`]: what `run`,
/// `status` and `tasks list` say on stderr, so that a file none of whose entries is valid is
/// never read as a list with nothing to do.
#[derive(Debug, Default)]
pub struct FailingEntries {
    pub file: String,
    /// `/tasks` or `` (a bare array).
    pub prefix: String,
    /// How many entries the file has.
    pub total: usize,
    /// Each failing entry: its index and the line of its first problem, in file order.
    pub entries: Vec<(usize, Option<u32>)>,
    /// The failing entries this runner owns (by agent and type), by index.
    pub owned: Vec<usize>,
    /// The schema problems of the failing entries this runner owns, as `validate` says them.
    pub owned_problems: Vec<Diagnostic>,
}

/// How many failing entries [`FailingEntries::sentence`] names before "and N more".
const FAILING_ENTRIES_NAMED: usize = 5;

impl FailingEntries {
    pub fn of(ws: &Workspace, tasks: &Loaded) -> FailingEntries {
        let file = ws.config.paths.tasks.clone();
        let selection = ws.task_selection();
        let Some(found) = tasks.value.as_ref().and_then(|v| crate::task::entries(v, &selection)) else {
            return FailingEntries { file, ..FailingEntries::default() };
        };
        let (prefix, list) = (found.prefix.as_str(), &found.list);
        let mut failing = FailingEntries { file, prefix: prefix.to_owned(), total: list.len(), ..Default::default() };
        for diagnostic in tasks.diagnostics.iter().filter(|d| d.kind == Kind::Schema) {
            let Some(index) = crate::engine::readiness::entry_of(diagnostic, prefix) else { continue };
            if failing.entries.last().is_none_or(|(last, _)| *last != index) {
                failing.entries.push((index, diagnostic.line));
            }
            if list.get(index).is_some_and(|entry| crate::task::owned_entry(&ws.config, entry)) {
                if failing.owned.last() != Some(&index) {
                    failing.owned.push(index);
                }
                failing.owned_problems.push(diagnostic.clone());
            }
        }
        failing.entries.sort_unstable();
        failing.entries.dedup_by_key(|(index, _)| *index);
        failing.owned.sort_unstable();
        failing.owned.dedup();
        failing
    }

    /// [`FailingEntries::of`] the text of `tasks.json` already read.
    pub fn of_text(ws: &Workspace, text: &str) -> FailingEntries {
        FailingEntries::of(ws, &check_tasks(ws, text.to_owned()))
    }

    /// One line for stderr: how many entries fail and where, or `None` when every entry passes.
    pub fn sentence(&self, agent: &str) -> Option<String> {
        let count = self.entries.len();
        if count == 0 {
            return None;
        }
        let mut places: Vec<String> = self
            .entries
            .iter()
            .take(FAILING_ENTRIES_NAMED)
            .map(|(index, line)| match line {
                Some(line) => format!("{}/{index} (line {line})", self.prefix),
                None => format!("{}/{index}", self.prefix),
            })
            .collect();
        let places = if count > FAILING_ENTRIES_NAMED {
            format!("{} and {} more", places.join(", "), count - FAILING_ENTRIES_NAMED)
        } else {
            let last = places.pop().unwrap_or_default();
            if places.is_empty() { last } else { format!("{} and {last}", places.join(", ")) }
        };
        let entries = if self.total == 1 { "entry" } else { "entries" };
        let fail = if count == 1 { "fails" } else { "fail" };
        let owned = match (self.owned.len(), count) {
            (0, _) => String::new(),
            (1, 1) => format!("; it is this runner's (`{agent}`) and cannot run"),
            (1, _) => format!("; one of them is this runner's (`{agent}`) and cannot run"),
            (n, _) => format!("; {n} of them are this runner's (`{agent}`) and cannot run"),
        };
        Some(format!(
            "warning: {count} of {} {entries} of {} {fail} the task schema, at {places}{owned}; `opsflow validate` lists every problem",
            self.total, self.file
        ))
    }
}

/// Whether a QA report named `QA-Report-<name>.md` is one release's report: `<name>` is its
/// front matter's `<unit_id>-<version>` (QA may write one report per release).
fn per_release_name(name: &str, unit: &str, front_matter: Option<&Value>) -> bool {
    let version = front_matter.and_then(|f| f.get("version")).and_then(Value::as_str).unwrap_or_default();
    name.strip_prefix(unit)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|suffix| !version.is_empty() && crate::release::same_version(suffix, version))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn graph_problems_are_each_reported() {
        let tasks = [
            json!({"id": "A", "depends_on": ["B"]}),
            json!({"id": "B", "depends_on": ["C", "Z"]}),
            json!({"id": "C", "depends_on": ["A"]}),
            json!({"id": "A"}),
        ];
        let problems = task_graph_problems("t.json", "/tasks", &tasks, None, &|_| false);
        let kinds: Vec<_> = problems.iter().map(|d| (d.kind, d.pointer.clone().unwrap())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::DuplicateId, "/tasks/3/id".to_owned()),
                (Kind::UnknownDependency, "/tasks/1/depends_on/1".to_owned()),
                (Kind::DependencyCycle, "/tasks/0/depends_on".to_owned()),
            ]
        );
        assert_eq!(problems[2].message, "dependency cycle: A -> B -> C -> A");
    }
}
