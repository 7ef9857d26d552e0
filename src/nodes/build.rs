//! Build_Release: the build, the release directory with its SHA256SUMS, the digest recorded
//! at build time, and the checks of a release before it is deployed.

#[allow(unused_imports)]
use super::*;

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
pub fn verify_release(dir: &Path) -> Result<Vec<(String, String)>, ReleaseError> {
    let dir_buf = || dir.to_owned();
    let sums =
        fs::read_to_string(dir.join("SHA256SUMS")).map_err(|source| ReleaseError::Sums { dir: dir_buf(), source })?;
    let mut listed = Vec::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, file) =
            line.split_once("  ").ok_or_else(|| ReleaseError::Malformed { dir: dir_buf(), line: line.to_owned() })?;
        if file.contains("..") || file.starts_with('/') {
            return Err(ReleaseError::Outside { dir: dir_buf(), file: file.to_owned() });
        }
        let actual = sha256::file_hex(&dir.join(file)).map_err(|source| ReleaseError::Unreadable {
            dir: dir_buf(),
            file: file.to_owned(),
            source,
        })?;
        if actual != hash {
            return Err(ReleaseError::Mismatch {
                dir: dir_buf(),
                file: file.to_owned(),
                expected: hash.to_owned(),
                actual,
            });
        }
        listed.push((file.to_owned(), hash.to_owned()));
    }
    let mut present = Vec::new();
    collect_files(dir, dir, &mut present).map_err(|source| ReleaseError::List { dir: dir_buf(), source })?;
    if let Some(extra) = present.iter().find(|f| *f != "SHA256SUMS" && !listed.iter().any(|(l, _)| l == *f)) {
        return Err(ReleaseError::Unlisted { dir: dir_buf(), file: extra.clone() });
    }
    Ok(listed)
}

pub(crate) fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
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

pub(crate) fn build_release(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let version = run.release.version.to_string();
    let mut vars = run.env_vars("build");
    let release = run.ws.config.release.clone();
    let mut steps = Vec::new();
    if let Some(build) = &release.build {
        let step = run.run_step("build", build, &vars)?;
        steps.push(json!({"name": step.name, "summary": step.summary(), "log": step.log}));
    }

    let relative = release_dir(run.ws, &run.release());
    let target = run.ws.inside(&relative).map_err(NodeError::input("collect"))?;
    let staging = run.ws.root.join(format!(".opsflow/build-{}", run.run_id));
    let root = run.ws.root.clone();
    write::remove_tree(&root, &staging).ok();
    for entry in &release.artifacts {
        crate::config::relative_inside(entry)
            .map_err(|why| NodeError::new("collect", format!("`release.artifacts` entry {why}")))?;
        let source = run.ws.inside(entry.trim_end_matches('/')).map_err(NodeError::input("collect"))?;
        let copied = if source.is_dir() {
            if entry.ends_with('/') {
                write::copy_tree(&root, &source, &staging)
            } else {
                write::copy_tree(&root, &source, &staging.join(source.file_name().unwrap_or_default()))
            }
        } else if source.is_file() {
            write::copy_file(&root, &source, &staging.join(source.file_name().unwrap_or_default()))
        } else {
            return Err(NodeError::Missing {
                step: "collect",
                reason: format!("release artifact `{entry}` does not exist after the build"),
            });
        };
        copied.map_err(|source| NodeError::Write {
            step: "collect",
            doing: format!("cannot copy `{entry}`"),
            source,
        })?;
    }
    let mut files = Vec::new();
    collect_files(&staging, &staging, &mut files).map_err(NodeError::io("checksum"))?;
    let mut sums = String::new();
    let mut listed = Vec::new();
    for file in &files {
        let hash = sha256::file_hex(&staging.join(file)).map_err(NodeError::io("checksum"))?;
        sums.push_str(&format!("{hash}  {file}\n"));
        listed.push(json!({"file": file, "sha256": hash}));
    }
    write::write_file(&root, &staging.join("SHA256SUMS"), sums.as_bytes()).map_err(NodeError::io("checksum"))?;
    if target.exists() {
        // A version is immutable: the same content is fine, different content is refused.
        let existing = fs::read_to_string(target.join("SHA256SUMS")).unwrap_or_default();
        write::remove_tree(&root, &staging).ok();
        if existing != sums {
            return Err(NodeError::new(
                "collect",
                format!(
                    "{relative} already exists with different content; a released version is immutable, so bump the version"
                ),
            ));
        }
    } else {
        write::create_dir_all(&root, target.parent().expect("a release dir has a parent"))
            .map_err(NodeError::io("collect"))?;
        write::rename(&root, &staging, &target).map_err(|source| NodeError::Write {
            step: "collect",
            doing: format!("cannot move the release into {relative}"),
            source,
        })?;
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
            return Err(NodeError::command(&step));
        }
        tag = json!({"name": tag_name, "commit": step.tail.lines().last().unwrap_or("").trim()});
    }
    run.artifacts.push(format!("{relative}/"));
    // The digest of SHA256SUMS as built, so that a deploy can tell a release whose files and
    // SHA256SUMS were both rewritten afterwards: kept in opsflow's runtime folder and in R07.
    let sums_digest = sha256::hex(sums.as_bytes());
    let record = built_digest_path(run.ws, &run.release());
    if let Err(e) = run.ws.inside(&record).and_then(|path| {
        write::write_file(&root, &path, format!("{sums_digest}\n").as_bytes()).map_err(|e| {
            crate::workspace::diagnostic::Diagnostic::new(
                &record,
                crate::workspace::diagnostic::Kind::Io,
                e.to_string(),
            )
        })
    }) {
        tracing::warn!("cannot record the digest of {relative}/SHA256SUMS: {e}");
    }
    // The commit the release was built from, so that production can tell whether it contains
    // what is live (`environment::view::containment`).
    let head = crate::environment::view::head_commit(&run.ws.root);
    let built_from = head.as_ref().map(|(commit, dirty)| json!({"commit": commit, "dirty": dirty}));
    let extra = json!({"release_dir": relative, "files": listed, "steps": steps, "tag": tag, "built_from": built_from});
    let mut front = Map::new();
    front.insert("sha256sums".into(), sums_digest.into());
    if let Some((commit, dirty)) = head {
        front.insert("commit".into(), commit.into());
        front.insert("dirty".into(), dirty.into());
    }
    run.write_markdown_with("R07-version-tag.md", None, "completed", extra, front)?;
    run.summary = format!("built release {version}: {} files in {relative}", files.len());
    Ok(Outcome::Done)
}

/// Where the digest of a release's `SHA256SUMS` as built is kept: opsflow's runtime folder.
pub(crate) fn built_digest_path(ws: &Workspace, release: &Release) -> String {
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
pub(crate) fn check_built_digest(run: &NodeRun<'_>, dir: &Path) -> Result<(), NodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_a_release_is_refused_names_its_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path();
        let shown = release.display();
        let missing = verify_release(release).unwrap_err();
        assert!(matches!(missing, ReleaseError::Sums { .. }), "{missing:?}");
        assert!(missing.to_string().starts_with(&format!("{shown}/SHA256SUMS: ")), "{missing}");
        fs::write(release.join("index.html"), "<h1>1.0.0</h1>\n").unwrap();
        let digest = sha256::hex(b"<h1>1.0.0</h1>\n");
        fs::write(release.join("SHA256SUMS"), format!("{digest}  index.html\n")).unwrap();
        assert_eq!(verify_release(release).unwrap(), [("index.html".to_owned(), digest.clone())]);
        fs::write(release.join("index.html"), "<h1>changed</h1>\n").unwrap();
        let changed = verify_release(release).unwrap_err().to_string();
        assert!(
            changed.starts_with(&format!("{shown}/index.html does not match SHA256SUMS (expected {digest}, found ")),
            "{changed}"
        );
        fs::write(release.join("index.html"), "<h1>1.0.0</h1>\n").unwrap();
        fs::write(release.join("extra.js"), "").unwrap();
        assert_eq!(
            verify_release(release).unwrap_err().to_string(),
            format!(
                "{shown}/extra.js is in the release but not in SHA256SUMS: the release was changed after it was built"
            )
        );
        fs::write(release.join("SHA256SUMS"), format!("{digest}  index.html\n{digest}  gone.css\n")).unwrap();
        let gone = verify_release(release).unwrap_err().to_string();
        assert!(gone.starts_with(&format!("{shown}/gone.css: ")), "{gone}");
    }
}
