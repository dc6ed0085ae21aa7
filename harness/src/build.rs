//! The engine builds the harness runs: this one (the binaries beside the
//! harness) or another git ref's, exported and built under
//! `target/against/`, for `gate --against <ref>`.
//!
//! A ref is built from `git archive` (its committed tree, not the working
//! tree's changes) with the same cargo profile as the harness itself, so
//! both sides of an A/B run are optimised alike. The sources are kept per
//! commit and the target directory is shared between refs, so a second run
//! against the same ref builds nothing and another ref rebuilds only the
//! workspace's own crates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Binaries every A/B side runs.
const BINARIES: [&str; 2] = ["tasker-server", "tasker-worker"];

/// Where an engine's binaries, configuration and templates are.
#[derive(Debug, Clone)]
pub struct EngineBuild {
    /// "this build", or the ref and its commit.
    pub label: String,
    pub bin_dir: PathBuf,
    /// The source tree: `config/` and `scenarios/templates/` come from it.
    pub source_dir: PathBuf,
}

impl EngineBuild {
    /// The binaries built beside the harness executable, with this
    /// checkout's configuration and templates.
    pub fn this() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the harness executable")?;
        let mut bin_dir = exe
            .parent()
            .context("harness executable has no directory")?
            .to_path_buf();
        // A test binary runs from target/<profile>/deps/; the engine's
        // binaries are one level up.
        if bin_dir.ends_with("deps") {
            bin_dir.pop();
        }
        Ok(Self {
            label: "this build".into(),
            bin_dir,
            source_dir: repo_root(),
        })
    }

    pub fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.exists() {
            bail!(
                "{} not found ({}): build the engine's binaries with `cargo build {}--bins` \
                 (the cargo-make bench tasks do)",
                path.display(),
                self.label,
                if cfg!(debug_assertions) {
                    ""
                } else {
                    "--release "
                }
            );
        }
        Ok(path)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.source_dir.join("config")
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.source_dir.join("scenarios").join("templates")
    }

    /// Builds `git_ref` of the repository the harness was built from (or
    /// takes its binaries from an earlier build of the same commit).
    /// Progress and cargo's output go to stderr.
    pub fn of_ref(git_ref: &str) -> anyhow::Result<Self> {
        let repo = repo_root();
        let commit = resolve(&repo, git_ref)?;
        let short: String = commit.chars().take(10).collect();
        let against = repo.join("target").join("against");
        let build = Self {
            label: format!("{git_ref} ({short})"),
            bin_dir: against.join(format!("bin-{short}-{PROFILE_DIR}")),
            source_dir: against.join(format!("src-{short}")),
        };
        if BINARIES
            .iter()
            .all(|name| build.bin_dir.join(name).exists())
        {
            eprintln!(
                "{}: built earlier, in {}",
                build.label,
                build.bin_dir.display()
            );
            return Ok(build);
        }
        export(&repo, &commit, &build.source_dir)?;
        let target_dir = against.join("target");
        seed(&repo.join("target"), &target_dir)?;
        eprintln!("building {} in {}", build.label, build.source_dir.display());
        cargo_build(&build.source_dir, &target_dir)
            .with_context(|| format!("building {}", build.label))?;
        std::fs::create_dir_all(&build.bin_dir)?;
        for name in BINARIES {
            let built = target_dir.join(PROFILE_DIR).join(name);
            if !built.exists() {
                bail!(
                    "{} builds no {name}: A/B runs need a ref that has both tasker-server \
                     and tasker-worker",
                    build.label
                );
            }
            std::fs::copy(&built, build.bin_dir.join(name))
                .with_context(|| format!("copying {}", built.display()))?;
        }
        Ok(build)
    }
}

/// The cargo profile of this harness, which the reference is built with.
const PROFILE_DIR: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The workspace root the harness was compiled in.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// The commit a ref names, or an error naming the ref.
pub fn resolve(repo: &Path, git_ref: &str) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{git_ref}^{{commit}}"))
        .output()
        .context("running git (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "'{git_ref}' is not a commit of the repository at {}",
            repo.display()
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

/// Writes the commit's tree to `dir`, replacing what is there, with every
/// file's time set to now (`tar -m`). Why: refs share one target
/// directory, where cargo decides whether a workspace crate is fresh by
/// comparing its files' times with the last build's; files that look new
/// are always rebuilt, so one ref's binaries are never taken for another's.
fn export(repo: &Path, commit: &str, dir: &Path) -> anyhow::Result<()> {
    let parent = dir.parent().context("export directory has no parent")?;
    std::fs::create_dir_all(parent)?;
    let partial = parent.join(format!(".partial-{commit}"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let stdout = archive.stdout.take().expect("stdout is piped");
    let untar = Command::new("tar")
        .arg("-xm")
        .arg("-C")
        .arg(&partial)
        .stdin(stdout)
        .status()
        .context("running tar")?;
    let archived = archive.wait()?;
    if !(archived.success() && untar.success()) {
        bail!(
            "exporting commit {commit} into {} failed",
            partial.display()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&partial, dir)
        .with_context(|| format!("moving the export to {}", dir.display()))?;
    Ok(())
}

/// Seeds the refs' target directory, the first time, with a copy of this
/// checkout's compiled dependencies (same paths relative to the workspace,
/// same profile: cargo takes them as fresh), which turns a full build of
/// a few hundred crates into a build of the workspace's own.
fn seed(this_target: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let (from, to) = (this_target.join(PROFILE_DIR), target_dir.join(PROFILE_DIR));
    if to.exists() || !from.join("deps").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&to)?;
    for dir in ["deps", "build", ".fingerprint"] {
        // A real copy, not hard links: a file written in place in one
        // target directory must not change the other's.
        let status = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(from.join(dir))
            .arg(&to)
            .status()
            .context("running cp")?;
        if !status.success() {
            bail!("copying {} to {}", from.join(dir).display(), to.display());
        }
    }
    Ok(())
}

/// Builds the packages that hold the binaries (not the harness).
fn cargo_build(source_dir: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(source_dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--locked",
            "--bins",
            "-p",
            "tasker-engine",
            "-p",
            "tasker-scenarios",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let status = command.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed in {} (see above)", source_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_head_and_refuses_unknown_refs() {
        let repo = repo_root();
        let head = resolve(&repo, "HEAD").unwrap();
        assert_eq!(head.len(), 40, "{head}");
        let error = resolve(&repo, "no-such-ref-xyz").unwrap_err().to_string();
        assert!(
            error.contains("'no-such-ref-xyz' is not a commit"),
            "{error}"
        );
    }
}
