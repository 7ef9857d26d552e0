//! The sample workspace of the repository, embedded so that `opsflow demo` works anywhere.

/// Every file of the sample workspace: (path relative to the workspace, content).
pub const FILES: &[(&str, &str)] = &[
    ("ARTIFACTS/qa-engineer/qa-test-report.json", include_str!("../ARTIFACTS/qa-engineer/qa-test-report.json")),
    ("QA/QA-Report-UNIT-001.md", include_str!("../QA/QA-Report-UNIT-001.md")),
    ("app/index.html", include_str!("../app/index.html")),
    ("app/style.css", include_str!("../app/style.css")),
    (
        "docs/workflow/artifacts/D21-release-candidate.md",
        include_str!("../docs/workflow/artifacts/D21-release-candidate.md"),
    ),
    (
        "docs/workflow/artifacts/INFRA01-requirements.md",
        include_str!("../docs/workflow/artifacts/INFRA01-requirements.md"),
    ),
    (
        "docs/workflow/artifacts/INFRA02-compute-needs.md",
        include_str!("../docs/workflow/artifacts/INFRA02-compute-needs.md"),
    ),
    (
        "docs/workflow/artifacts/INFRA03-storage-needs.md",
        include_str!("../docs/workflow/artifacts/INFRA03-storage-needs.md"),
    ),
    ("docs/workflow/artifacts/R04-merge-result.md", include_str!("../docs/workflow/artifacts/R04-merge-result.md")),
    ("docs/workflow/.gitignore", include_str!("../docs/workflow/.gitignore")),
    ("docs/workflow/human-requests.md", include_str!("../docs/workflow/human-requests.md")),
    ("docs/workflow/state.json", include_str!("../docs/workflow/state.json")),
    ("docs/workflow/tasks.json", include_str!("../docs/workflow/tasks.json")),
    ("project-config.json", include_str!("../project-config.json")),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_sample_ignores_exactly_the_lock_files_the_store_ignores() {
        let gitignore =
            super::FILES.iter().find(|(path, _)| *path == "docs/workflow/.gitignore").map(|(_, text)| *text);
        assert_eq!(gitignore, Some(crate::store::file::LOCK_GITIGNORE));
    }
}
