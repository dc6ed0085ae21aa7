//! Finding the Docker engine and asking it, quickly, whether it is there.
//!
//! `--postgres auto` must decide between a container and a local cluster
//! without hanging: a Docker socket can exist with no daemon behind it, or
//! `DOCKER_HOST` can name a machine that never answers. [`probe`] therefore
//! takes the host as a parameter (so tests can point it anywhere without
//! touching the process environment) and a deadline, and its errors say
//! which socket or address did not answer and why, since that sentence
//! becomes the reason printed for falling back to a local cluster.
//!
//! The host is resolved like testcontainers resolves it (`DOCKER_HOST`, then
//! the usual socket paths), so the engine probed is the one the container
//! is then started on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use testcontainers::bollard::errors::Error as BollardError;
use testcontainers::bollard::{Docker, API_DEFAULT_VERSION};

/// The socket Docker listens on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where the Docker engine is, as `DOCKER_HOST` spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerHost {
    /// `unix:///path/to/docker.sock`.
    Unix(PathBuf),
    /// `tcp://host:port` or `http://host:port` (plain HTTP).
    Tcp(String),
    /// Anything else (`ssh://`, `https://`, `npipe://`, garbage): kept so the
    /// probe can say why it was not used.
    Unsupported(String),
}

impl DockerHost {
    /// `DOCKER_HOST` if set and not empty; otherwise the first existing
    /// socket among `/var/run/docker.sock` and the rootless locations
    /// testcontainers also tries; otherwise `/var/run/docker.sock`.
    pub fn from_env() -> Self {
        if let Some(host) = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
        {
            return Self::parse(host.trim());
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let candidates = [
            Some(PathBuf::from(DEFAULT_SOCKET)),
            runtime.map(|d| d.join(".docker/run/docker.sock")),
            home.as_ref().map(|d| d.join(".docker/run/docker.sock")),
            home.as_ref().map(|d| d.join(".docker/desktop/docker.sock")),
        ];
        let found = candidates.into_iter().flatten().find(|p| p.exists());
        Self::Unix(found.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)))
    }

    /// Parses a `DOCKER_HOST` value. Never fails: what cannot be used
    /// becomes [`DockerHost::Unsupported`].
    pub fn parse(value: &str) -> Self {
        if let Some(path) = value.strip_prefix("unix://") {
            Self::Unix(PathBuf::from(path))
        } else if let Some(addr) = value
            .strip_prefix("tcp://")
            .or_else(|| value.strip_prefix("http://"))
        {
            Self::Tcp(addr.trim_end_matches('/').to_owned())
        } else {
            Self::Unsupported(value.to_owned())
        }
    }

    /// What to call it in a sentence: "Docker socket /var/run/docker.sock".
    pub fn describe(&self) -> String {
        match self {
            Self::Unix(path) => format!("Docker socket {}", path.display()),
            Self::Tcp(addr) => format!("Docker engine at tcp://{addr}"),
            Self::Unsupported(value) => format!("Docker host {value}"),
        }
    }

    /// Whether the engine runs on this machine (so container owner pids can
    /// be checked against local processes).
    pub fn is_local_socket(&self) -> bool {
        matches!(self, Self::Unix(_))
    }
}

impl fmt::Display for DockerHost {
    /// The `DOCKER_HOST` spelling: `unix:///var/run/docker.sock`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
            Self::Unsupported(value) => f.write_str(value),
        }
    }
}

/// A Docker engine that answered [`probe`].
#[derive(Clone, Debug)]
pub struct DockerEngine {
    /// Where it answered.
    pub host: DockerHost,
    /// Its version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    client: Docker,
}

impl DockerEngine {
    /// The API client, for the container backend.
    pub(crate) fn client(&self) -> &Docker {
        &self.client
    }

    /// Whether `image` (e.g. `postgres:15`) is present in the engine's
    /// local image store. Asks nothing of any registry.
    pub async fn has_image(&self, image: &str) -> anyhow::Result<bool> {
        match self.client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(anyhow!(e)).with_context(|| {
                format!(
                    "asking the {} whether image {image} is present",
                    self.host.describe()
                )
            }),
        }
    }
}

/// Asks the engine at `host` for its version, giving up after `timeout`.
///
/// The error is one sentence naming the host, e.g. "Docker socket
/// /var/run/docker.sock did not answer: it does not exist".
pub async fn probe(host: &DockerHost, timeout: Duration) -> anyhow::Result<DockerEngine> {
    let did_not_answer = |why: String| anyhow!("{} did not answer: {why}", host.describe());
    // bollard's own timeout is in whole seconds; ours wraps the call.
    let secs = timeout.as_secs().max(1);
    let client = match host {
        DockerHost::Unix(path) => {
            check_socket(path).map_err(did_not_answer)?;
            Docker::connect_with_unix(&path.to_string_lossy(), secs, API_DEFAULT_VERSION)
        }
        DockerHost::Tcp(addr) => {
            Docker::connect_with_http(&format!("tcp://{addr}"), secs, API_DEFAULT_VERSION)
        }
        DockerHost::Unsupported(value) => bail!(
            "{} is not supported (only unix:// and tcp:// are); unset DOCKER_HOST or point it at \
             a unix socket",
            DockerHost::Unsupported(value.clone()).describe()
        ),
    }
    .map_err(|e| did_not_answer(chain(&e)))?;

    let version = tokio::time::timeout(timeout, client.version())
        .await
        .map_err(|_| did_not_answer(format!("no answer within {timeout:?}")))?
        .map_err(|e| did_not_answer(chain(&e)))?;
    Ok(DockerEngine {
        host: host.clone(),
        version: version
            .version
            .unwrap_or_else(|| "(unknown version)".into()),
        client,
    })
}

/// Why a unix socket path cannot be a Docker socket, if it cannot.
fn check_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt as _;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("it does not exist (is Docker installed and running?)".into())
        }
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.file_type().is_socket() => Err("it is not a socket".into()),
        Ok(_) => Ok(()),
    }
}

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
