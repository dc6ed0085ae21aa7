//! PostgreSQL for the benchmark harness, from one of several backends behind
//! one interface (`--postgres auto|container|local|url`).
//!
//! Why several: a number measured against an unknown server means little,
//! and no single way of getting a server works everywhere.
//! - `url`: an existing server named by `DATABASE_URL`, for measuring on the
//!   hardware and configuration the operator chose.
//! - `container`: PostgreSQL in Docker (testcontainers), the same version and
//!   settings on every machine, independent of the host's packages.
//! - `local`: the engine's throwaway cluster from the system packages, which
//!   needs neither Docker nor a running server.
//! - `auto` (the default): `DATABASE_URL` if set, else a container if a
//!   Docker engine answers quickly and has an image, else local, with a
//!   one-line reason saying which and why, which reports keep.
//!
//! [`Provisioned::admin_url`] is a superuser URL to the `postgres` database;
//! the harness creates a fresh database per scenario and connects to it with
//! [`Provisioned::url_for`]. The server lives as long as the [`Provisioned`].

mod container;
pub mod docker;
mod local;

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use pg_local::LocalCluster;
use url::Url;

use self::docker::DockerHost;

/// The environment variable naming an existing server for `url` (and `auto`).
pub const DATABASE_URL: &str = "DATABASE_URL";

/// Where the harness gets PostgreSQL from (`--postgres`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `DATABASE_URL` if set, else a container if Docker answers and an
    /// image is present, else a local cluster.
    #[default]
    Auto,
    /// A Docker container (testcontainers); images are never pulled.
    Container,
    /// A throwaway cluster from the system's PostgreSQL packages.
    Local,
    /// The server at `DATABASE_URL`.
    Url,
}

/// What to provision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionOptions {
    /// Preferred container image (default `postgres:15`).
    pub image: String,
    /// Image used when `image` is not present locally (default
    /// `tasker-postgres:15`, built by `scripts/pg-image`).
    pub fallback_image: String,
    /// Server settings, passed as `-c name=value` (container and local; a
    /// `url` server is used as it is).
    pub settings: Vec<(String, String)>,
    /// How long `auto` and `container` wait for the Docker engine to answer.
    pub docker_probe_timeout: Duration,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            image: "postgres:15".into(),
            fallback_image: "tasker-postgres:15".into(),
            settings: Vec::new(),
            docker_probe_timeout: Duration::from_secs(1),
        }
    }
}

/// What [`provision_in`] reads from the process environment, so that tests
/// can vary it without mutating process-global variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// `DATABASE_URL`, when set and not empty.
    pub database_url: Option<String>,
    /// The Docker engine to probe ([`DockerHost::from_env`]).
    pub docker_host: DockerHost,
}

impl Environment {
    /// Reads `DATABASE_URL` and `DOCKER_HOST` (or the default socket).
    pub fn from_process() -> Self {
        Self {
            database_url: std::env::var(DATABASE_URL)
                .ok()
                .filter(|u| !u.trim().is_empty()),
            docker_host: DockerHost::from_env(),
        }
    }
}

/// A PostgreSQL server ready for the harness, kept alive until dropped.
pub struct Provisioned {
    /// Superuser URL to the `postgres` database.
    pub admin_url: String,
    /// `"container"`, `"local"` or `"url"`.
    pub backend: &'static str,
    /// One line: which backend and why, e.g. "auto: local (Docker socket
    /// /var/run/docker.sock did not answer: it does not exist ...)".
    pub reason: String,
    admin: Url,
    // Dropped last: stops the container or cluster.
    _guard: Guard,
}

enum Guard {
    None,
    Local(#[allow(dead_code)] LocalCluster),
    Container(#[allow(dead_code)] Box<container::Running>),
}

impl Provisioned {
    /// The URL of `database` on the same server, as the same user.
    pub fn url_for(&self, database: &str) -> String {
        let mut url = self.admin.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().push(database);
        }
        url.into()
    }

    /// The server's log file, where it is on this machine (local
    /// clusters): what auto_explain writes is read from it.
    pub fn server_log(&self) -> Option<std::path::PathBuf> {
        match &self._guard {
            Guard::Local(cluster) => Some(cluster.log_path()),
            _ => None,
        }
    }
}

impl fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.admin.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.debug_struct("Provisioned")
            .field("admin_url", &shown.as_str())
            .field("backend", &self.backend)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// Provisions PostgreSQL from `backend`, reading `DATABASE_URL` and
/// `DOCKER_HOST` from the process environment.
pub async fn provision(
    backend: Backend,
    options: &ProvisionOptions,
) -> anyhow::Result<Provisioned> {
    provision_in(backend, options, &Environment::from_process()).await
}

/// [`provision`] with the environment given explicitly.
pub async fn provision_in(
    backend: Backend,
    options: &ProvisionOptions,
    env: &Environment,
) -> anyhow::Result<Provisioned> {
    match backend {
        Backend::Url => from_url(env.database_url.as_deref(), options, "url (--postgres url"),
        Backend::Local => start_local(options, "local (--postgres local)".into()).await,
        Backend::Container => {
            let engine = docker::probe(&env.docker_host, options.docker_probe_timeout)
                .await
                .map_err(|e| {
                    if e.is::<docker::EngineTooOld>() {
                        return e; // it says what to do
                    }
                    e.context(
                        "the container backend needs a Docker engine: install and start Docker, \
                         set DOCKER_HOST to where it listens, or use --postgres local",
                    )
                })?;
            let choice = container::choose_image(&engine, options)
                .await?
                .ok_or_else(|| container::no_image_error(options))?;
            let why = format!("container (--postgres container; {})", choice.why);
            start_container(&engine, &choice.image, options, why).await
        }
        Backend::Auto => auto(options, env).await,
    }
}

async fn auto(options: &ProvisionOptions, env: &Environment) -> anyhow::Result<Provisioned> {
    if env.database_url.is_some() {
        let why = "auto: url (DATABASE_URL is set";
        return from_url(env.database_url.as_deref(), options, why);
    }
    let engine = match docker::probe(&env.docker_host, options.docker_probe_timeout).await {
        Ok(engine) => engine,
        Err(e) => return start_local(options, format!("auto: local ({e:#})")).await,
    };
    let found = format!("Docker {} at {}", engine.version, engine.host);
    match container::choose_image(&engine, options).await {
        Ok(Some(choice)) => {
            let why = format!("auto: container ({found}; {})", choice.why);
            start_container(&engine, &choice.image, options, why.clone())
                .await
                .with_context(|| format!("{why}; use --postgres local to bypass Docker"))
        }
        Ok(None) => {
            let why = format!(
                "auto: local ({found}, but neither {} nor {} is present; scripts/pg-image builds \
                 {})",
                options.image, options.fallback_image, options.fallback_image
            );
            start_local(options, why).await
        }
        Err(e) => start_local(options, format!("auto: local ({e:#})")).await,
    }
}

/// The `url` backend; `why` is the reason without its closing parenthesis.
fn from_url(
    database_url: Option<&str>,
    options: &ProvisionOptions,
    why: &str,
) -> anyhow::Result<Provisioned> {
    let raw = database_url.ok_or_else(|| {
        anyhow!(
            "--postgres url needs {DATABASE_URL}, which is not set; set it to a superuser URL of \
             an existing server (postgres://user:password@host:5432/postgres), or use --postgres \
             auto, container or local"
        )
    })?;
    let mut admin = Url::parse(raw).with_context(|| {
        format!("{DATABASE_URL} is not a URL; set it to postgres://user@host/db")
    })?;
    if !matches!(admin.scheme(), "postgres" | "postgresql") || admin.cannot_be_a_base() {
        anyhow::bail!(
            "{DATABASE_URL} has scheme {:?}; set it to a postgres://user@host:port/db URL",
            admin.scheme()
        );
    }
    if let Ok(mut path) = admin.path_segments_mut() {
        path.clear().push("postgres");
    }
    let server = match (admin.host_str().filter(|h| !h.is_empty()), admin.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "the default unix socket".to_owned(),
    };
    Ok(Provisioned {
        admin_url: admin.to_string(),
        backend: "url",
        reason: match options.settings.len() {
            0 => format!("{why}; server {server})"),
            n => format!("{why}; server {server}; {n} requested setting(s) not applied)"),
        },
        admin,
        _guard: Guard::None,
    })
}

async fn start_local(options: &ProvisionOptions, why: String) -> anyhow::Result<Provisioned> {
    let cluster = local::start(options)
        .await
        .with_context(|| format!("{why} failed"))?;
    let admin_url = cluster.admin_url();
    let admin = Url::parse(&admin_url)
        .with_context(|| format!("the local cluster's URL {admin_url} does not parse"))?;
    Ok(Provisioned {
        admin_url,
        backend: "local",
        reason: why,
        admin,
        _guard: Guard::Local(cluster),
    })
}

async fn start_container(
    engine: &docker::DockerEngine,
    image: &str,
    options: &ProvisionOptions,
    why: String,
) -> anyhow::Result<Provisioned> {
    let (admin_url, running) = container::start(engine, image, options).await?;
    let admin = Url::parse(&admin_url)
        .with_context(|| format!("the container's URL {admin_url} does not parse"))?;
    Ok(Provisioned {
        admin_url,
        backend: "container",
        reason: why,
        admin,
        _guard: Guard::Container(Box::new(running)),
    })
}
