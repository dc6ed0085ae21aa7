//! Profiler recipes: `profiles/<name>.toml` says how the engine is built
//! for a profiler (cargo profile, features, RUSTFLAGS, target directory)
//! and which recorder the harness drives. The harness reads them, so a
//! recipe is changed in one place and `cargo make` and the harness agree.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::build::{repo_root, EngineBuild};

/// What records the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// samply attached to the process (CPU).
    Samply,
    /// perf record attached to the process (CPU).
    Perf,
    /// DHAT's allocator inside the process (heap).
    Dhat,
    /// console-subscriber inside the process (async tasks).
    Console,
    /// tracing-flame inside the process (span timings).
    TracingFlame,
    /// The database serving the engine: its statistics views, sampled
    /// wait events, auto_explain plans and perf on its backends.
    Postgres,
}

impl Tool {
    /// Attached to a running process after the warm-up; the others record
    /// the process's whole life and write their file when it exits.
    pub fn attaches(self) -> bool {
        matches!(self, Tool::Samply | Tool::Perf | Tool::Postgres)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    pub tool: Tool,
    pub cargo_profile: String,
    /// Features of tasker-engine and tasker-scenarios (both have them).
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub rustflags: Vec<String>,
    /// Relative to the repository.
    pub target_dir: PathBuf,
    /// How to install the recorder when it is missing (informative).
    pub install: Option<String>,
    /// Tasks run while recording (after the warm-up), unless --tasks.
    pub tasks: u64,
    /// The postgres recipe's probes.
    #[serde(default)]
    pub database: DatabaseSettings,
}

/// How the database is probed (`[database]` in profiles/postgres.toml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Between two pg_stat_activity samples of the engine's backends.
    pub wait_interval_ms: u64,
    /// The share of statements auto_explain instruments (each costs its
    /// statement ANALYZE's timing overhead) ...
    pub explain_sample_rate: f64,
    /// ... and of those, the ones that ran at least this long are logged
    /// (0: all of them; the hot path's statements take about a
    /// millisecond).
    pub explain_min_duration_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            wait_interval_ms: 5,
            explain_sample_rate: 0.05,
            explain_min_duration_ms: 0,
        }
    }
}

/// The directory of recipes.
pub fn dir() -> PathBuf {
    repo_root().join("profiles")
}

impl Recipe {
    /// `profiles/<name>.toml`; an unknown name lists the recipes there.
    pub fn load(name: &str) -> anyhow::Result<Self> {
        Self::load_from(&dir(), name)
    }

    pub fn load_from(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let path = dir.join(format!("{name}.toml"));
        if !path.exists() {
            bail!(
                "no profiler recipe {} (recipes: {})",
                path.display(),
                available(dir).join(", ")
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut recipe: Recipe = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid recipe", path.display()))?;
        recipe.name = name.to_string();
        Ok(recipe)
    }

    /// The cargo command that builds the engine's binaries for this
    /// recipe.
    pub fn build_command(&self) -> Command {
        let root = repo_root();
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(&root)
            .args(["build", "--profile", &self.cargo_profile, "--bins"])
            .args(["-p", "tasker-engine", "-p", "tasker-scenarios"])
            .env("CARGO_TARGET_DIR", root.join(&self.target_dir));
        if !self.features.is_empty() {
            let features: Vec<String> = self
                .features
                .iter()
                .flat_map(|f| {
                    [
                        format!("tasker-engine/{f}"),
                        format!("tasker-scenarios/{f}"),
                    ]
                })
                .collect();
            command.args(["--features", &features.join(",")]);
        }
        if !self.rustflags.is_empty() {
            // Appended to what the environment sets, as cargo would not.
            let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            for flag in &self.rustflags {
                flags = format!("{flags} {flag}").trim().to_string();
            }
            command.env("RUSTFLAGS", flags);
        }
        command
    }

    /// Builds (cargo does nothing when it is up to date) and returns the
    /// build's binaries. cargo's output goes to stderr.
    pub fn build(&self) -> anyhow::Result<EngineBuild> {
        let mut command = self.build_command();
        eprintln!(
            "building the engine for {}: {}",
            self.name,
            describe(&command)
        );
        let status = command
            .status()
            .context("running cargo to build the profiling binaries")?;
        if !status.success() {
            bail!(
                "building the engine for the {} recipe failed (cargo's messages above)",
                self.name
            );
        }
        Ok(EngineBuild {
            label: format!("{} build", self.name),
            bin_dir: self.bin_dir(),
            source_dir: repo_root(),
        })
    }

    pub fn bin_dir(&self) -> PathBuf {
        // cargo names the `dev` profile's directory `debug`.
        let profile = match self.cargo_profile.as_str() {
            "dev" => "debug",
            other => other,
        };
        repo_root().join(&self.target_dir).join(profile)
    }
}

fn available(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    names
}

/// The command line as a person would type it, environment first.
fn describe(command: &Command) -> String {
    let env = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={:?}", k.to_str()?, v?.to_str()?)));
    let args = std::iter::once(command.get_program().to_string_lossy().into_owned())
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    env.chain(args).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recipe_in_profiles_loads() {
        let names = available(&dir());
        for name in [
            "samply",
            "perf",
            "dhat",
            "console",
            "tracing-flame",
            "postgres",
        ] {
            assert!(names.contains(&name.to_string()), "{names:?}");
            let recipe = Recipe::load(name).unwrap();
            assert_eq!(recipe.cargo_profile, "profiling", "{name}");
        }
        assert_eq!(Recipe::load("dhat").unwrap().tool, Tool::Dhat);
        assert!(Recipe::load("samply").unwrap().tool.attaches());
        assert!(!Recipe::load("console").unwrap().tool.attaches());
        let postgres = Recipe::load("postgres").unwrap();
        assert_eq!(postgres.tool, Tool::Postgres);
        assert_eq!(postgres.database.wait_interval_ms, 5);
        assert_eq!(
            Recipe::load("perf").unwrap().database,
            DatabaseSettings::default()
        );
    }

    #[test]
    fn an_unknown_recipe_lists_the_known_ones() {
        let error = Recipe::load("valgrind").unwrap_err().to_string();
        assert!(error.contains("no profiler recipe"), "{error}");
        assert!(error.contains("valgrind.toml"), "{error}");
        assert!(error.contains("dhat, perf, postgres, samply"), "{error}");
    }

    #[test]
    fn a_bad_field_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("odd.toml"), "tool = \"gprof\"\n").unwrap();
        let error = format!("{:#}", Recipe::load_from(dir.path(), "odd").unwrap_err());
        assert!(error.contains("odd.toml is not a valid recipe"), "{error}");
        assert!(error.contains("gprof"), "{error}");
    }

    #[test]
    fn the_build_command_carries_features_flags_and_target_dir() {
        let recipe = Recipe::load("console").unwrap();
        let command = recipe.build_command();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.windows(2).any(|w| w == ["--profile", "profiling"]),
            "{args:?}"
        );
        assert!(
            args.contains(
                &"tasker-engine/tokio-console,tasker-scenarios/tokio-console".to_string()
            ),
            "{args:?}"
        );
        let env: Vec<(String, String)> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.into(), v?.to_str()?.into())))
            .collect();
        assert!(env
            .iter()
            .any(|(k, v)| k == "RUSTFLAGS" && v.ends_with("--cfg tokio_unstable")));
        assert!(env
            .iter()
            .any(|(k, v)| k == "CARGO_TARGET_DIR" && v.ends_with("target/console")));
        assert!(recipe.bin_dir().ends_with("target/console/profiling"));
    }
}
