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
//!
//! The API version: a bollard client starts at bollard's default
//! ([`API_DEFAULT_VERSION`], 1.53 for bollard 0.21), newer than what many
//! machines' engines speak (Debian 12's Docker 20.10 speaks 1.41 and refuses
//! `/v1.53/...` with "client version 1.53 is too new"). Requests work anyway
//! only because bollard joins each absolute path onto its versioned base URL,
//! which drops the `/v1.53` prefix, so the engine answers at its own version.
//! So as not to depend on that, [`probe`] negotiates (bollard's
//! `negotiate_version`, which lowers the client to the engine's version) and
//! refuses an engine older than [`MIN_API_VERSION`] with an error naming both
//! versions and what to do. testcontainers makes a client of its own that
//! the harness cannot reach (it connects at bollard's default and does not
//! negotiate); the minimum covers what it asks of the engine too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use testcontainers::bollard::errors::Error as BollardError;
use testcontainers::bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

/// The socket Docker listens on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The oldest Docker API the container backend works with: 1.25 (Docker
/// 1.13), which brought `HostConfig.Mounts`, how testcontainers mounts the
/// data volume and the socket directory. (bollard declares no minimum; its
/// [`API_DEFAULT_VERSION`] is the newest API it knows, not a requirement.)
pub const MIN_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 25,
};

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
    /// The API version the client negotiated with it: the engine's own
    /// (`1.41` for Docker 20.10), or bollard's default when the engine is
    /// newer.
    pub api_version: String,
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

/// The error of [`probe`] for an engine that answers but speaks an API
/// older than [`MIN_API_VERSION`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} answered, but it is Docker {version} with API {api_version}, older than API \
     {min} (Docker 1.13) that the container backend needs; upgrade Docker or use --postgres \
     local",
    min = MIN_API_VERSION
)]
pub struct EngineTooOld {
    /// Where it answered, as [`DockerHost::describe`] says it.
    pub host: String,
    /// The engine's version, e.g. `1.12.6`.
    pub version: String,
    /// The newest API it speaks, e.g. `1.24`.
    pub api_version: String,
}

/// Whether an engine whose newest API is `api` (as `GET /version` reports
/// it in `ApiVersion`) is recent enough for the container backend.
pub fn check_api_version(
    host: &DockerHost,
    version: &str,
    api: &ClientVersion,
) -> Result<(), EngineTooOld> {
    if *api >= MIN_API_VERSION {
        return Ok(());
    }
    Err(EngineTooOld {
        host: host.describe(),
        version: version.to_owned(),
        api_version: api.to_string(),
    })
}

/// Asks the engine at `host` for its version, negotiates the API version
/// with it, and checks that it is at least [`MIN_API_VERSION`], giving up
/// after `timeout`.
///
/// The error is one sentence naming the host, e.g. "Docker socket
/// /var/run/docker.sock did not answer: it does not exist", or, for an engine
/// too old, an [`EngineTooOld`].
pub async fn probe(host: &DockerHost, timeout: Duration) -> anyhow::Result<DockerEngine> {
    let did_not_answer = |why: String| anyhow!("{} did not answer: {why}", host.describe());
    // bollard's own timeout is in whole seconds; ours wraps the calls.
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
    .map_err(|e| did_not_answer(unreachable_why(&e)))?;

    let (client, version) = tokio::time::timeout(timeout, async {
        let client = client.negotiate_version().await?;
        let version = client.version().await?;
        Ok::<_, BollardError>((client, version))
    })
    .await
    .map_err(|_| did_not_answer(format!("no answer within {timeout:?}")))?
    .map_err(|e| match e {
        BollardError::APIVersionParseError {} => anyhow!(
            "{} answered, but not with a Docker API version in GET /version (is it a Docker \
             engine?); point DOCKER_HOST at one or use --postgres local",
            host.describe()
        ),
        e => did_not_answer(unreachable_why(&e)),
    })?;
    let engine_version = version
        .version
        .unwrap_or_else(|| "(unknown version)".into());
    // The engine's newest API when that is older than bollard's default.
    let negotiated = client.client_version();
    check_api_version(host, &engine_version, &negotiated)?;
    Ok(DockerEngine {
        host: host.clone(),
        version: engine_version,
        api_version: negotiated.to_string(),
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

/// Why a client could not reach the engine: the usual cases in words, else
/// the error and its causes.
fn unreachable_why(error: &BollardError) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "connection refused, nothing listens there (is the Docker daemon \
                            running?)"
                        .into()
                }
                std::io::ErrorKind::PermissionDenied => {
                    return "permission denied (run as a member of the docker group, or as \
                            root)"
                        .into()
                }
                _ => {}
            }
        }
        source = e.source();
    }
    chain(error)
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

#[cfg(test)]
mod tests {
    use testcontainers::bollard::{ClientVersion, API_DEFAULT_VERSION};

    use super::{check_api_version, DockerHost, EngineTooOld, MIN_API_VERSION};

    fn api(major_version: usize, minor_version: usize) -> ClientVersion {
        ClientVersion {
            major_version,
            minor_version,
        }
    }

    #[test]
    fn engines_from_api_1_25_on_are_accepted() {
        let host = DockerHost::parse("unix:///var/run/docker.sock");
        assert_eq!(MIN_API_VERSION.to_string(), "1.25");
        assert_eq!(check_api_version(&host, "1.13.1", &api(1, 25)), Ok(()));
        assert_eq!(check_api_version(&host, "20.10.24", &api(1, 41)), Ok(()));
        assert_eq!(
            check_api_version(&host, "29.0.0", API_DEFAULT_VERSION),
            Ok(())
        );
        assert_eq!(check_api_version(&host, "99.0.0", &api(2, 0)), Ok(()));
    }

    #[test]
    fn older_engines_are_refused_with_both_versions_and_what_to_do() {
        let host = DockerHost::parse("unix:///run/docker.sock");
        let err = check_api_version(&host, "1.12.6", &api(1, 24)).unwrap_err();
        assert_eq!(
            err,
            EngineTooOld {
                host: "Docker socket /run/docker.sock".into(),
                version: "1.12.6".into(),
                api_version: "1.24".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "Docker socket /run/docker.sock answered, but it is Docker 1.12.6 with API 1.24, older \
             than API 1.25 (Docker 1.13) that the container backend needs; upgrade Docker or use \
             --postgres local"
        );
        let host = DockerHost::parse("tcp://10.0.0.5:2375");
        let err = check_api_version(&host, "1.0.1", &api(1, 12)).unwrap_err();
        let expected = "Docker engine at tcp://10.0.0.5:2375 answered, but it is Docker 1.0.1 \
                        with API 1.12, older than API 1.25";
        assert!(err.to_string().starts_with(expected), "{err}");
    }
}
