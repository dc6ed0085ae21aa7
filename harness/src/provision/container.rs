//! The container backend: PostgreSQL in a Docker container, started with
//! testcontainers.
//!
//! A container pins the server version, its packages and its settings
//! independently of what the host has installed, which is what makes runs on
//! different machines comparable. Images are never pulled: this project's
//! machines reach no container registry, and a pull that cannot succeed may
//! hang. The image is `options.image` (`postgres:15`) when present locally,
//! else `options.fallback_image` (`tasker-postgres:15`, built from Debian's
//! packages by `scripts/pg-image`).
//!
//! Both images take `-c name=value` arguments and log "database system is
//! ready to accept connections" when up; the official one prints it twice
//! (its init-time server is not the one we connect to, see below), so after
//! that message we also retry connecting until `SELECT 1` answers.
//!
//! What the container costs, and how it is avoided: a container as Docker
//! sets one up by default gave the linear scenario a P50 of 11-17 ms where
//! the local cluster on the same 2-core machine gave 8-10 ms (fdatasync in
//! the container took 166 us against the host's 86 us). Two things were in
//! the way, neither of which is PostgreSQL:
//! - PGDATA on the container's root file system, which is the storage
//!   driver's (overlay, or fuse-overlayfs in a FUSE process), so every WAL
//!   write and fsync went through it. PGDATA is therefore a Docker volume
//!   of its own (a directory on the engine's disk, fsync as the host's; not
//!   tmpfs, which would fake durability), created per container and removed
//!   with it.
//! - The connection going through docker-proxy, a userland TCP relay, for
//!   every round trip. When the engine runs on this machine (a unix
//!   `DOCKER_HOST`), the container therefore gets no network at all: the
//!   server listens only on a unix socket in a fresh host directory that is
//!   bind-mounted into the container, and the URL names that directory
//!   (`?host=/tmp/tasker-harness-pg.…`), as the local cluster's does. The
//!   socket's port (5433) differs from the official image's init-time server
//!   (5432), so that server is never mistaken for the real one. An engine
//!   elsewhere (`tcp://`) cannot share a host directory, so there the port is
//!   published on 127.0.0.1 only (authentication is `trust`).
//!
//! Containers and volumes carry their owner's pid as a label; those of
//! processes that are gone (killed runs) are removed, with their socket
//! directories, before a new container starts.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use sqlx::Connection as _;
use testcontainers::bollard::models::{PortBinding, VolumeCreateRequest};
use testcontainers::bollard::query_parameters::{
    ListContainersOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{IntoContainerPort as _, Mount, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};
use url::Url;

use super::docker::{self, DockerEngine, DockerHost};
use super::ProvisionOptions;

/// Log line of a PostgreSQL server that accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";
/// Label holding the pid of the process that started the container.
const OWNER_LABEL: &str = "tasker-harness.owner-pid";
/// Label holding that process's pid namespace (`pid:[4026531836]`): pids
/// are only compared within the namespace they came from.
const PIDNS_LABEL: &str = "tasker-harness.owner-pidns";
/// Label of a data volume: the host directory holding the server's socket.
const SOCKET_DIR_LABEL: &str = "tasker-harness.socket-dir";
/// Prefix of the data volumes' names and of the socket directories' names.
const NAME_PREFIX: &str = "tasker-harness-pg.";
/// PGDATA in both images; the data volume is mounted there.
const DATA_TARGET: &str = "/var/lib/postgresql/data";
/// Where the socket directory is mounted in the container. Not
/// `/var/run/postgresql`, which the official image's entrypoint chowns.
const SOCKET_TARGET: &str = "/var/run/tasker-harness";
/// The port in the socket's name (`.s.PGSQL.5433`); see the module docs.
const SOCKET_PORT: u16 = 5433;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;
const PG_PORT: u16 = 5432;

/// Which image to run, and why that one.
pub(crate) struct ImageChoice {
    pub image: String,
    pub why: String,
}

/// `options.image` if present, else `options.fallback_image` if present,
/// else `None`.
pub(crate) async fn choose_image(
    engine: &DockerEngine,
    options: &ProvisionOptions,
) -> anyhow::Result<Option<ImageChoice>> {
    if engine.has_image(&options.image).await? {
        return Ok(Some(ImageChoice {
            image: options.image.clone(),
            why: format!("image {} is present", options.image),
        }));
    }
    if engine.has_image(&options.fallback_image).await? {
        return Ok(Some(ImageChoice {
            image: options.fallback_image.clone(),
            why: format!(
                "image {} is not present, {} is",
                options.image, options.fallback_image
            ),
        }));
    }
    Ok(None)
}

/// The error for "neither image is present", with what to run.
pub(crate) fn no_image_error(options: &ProvisionOptions) -> anyhow::Error {
    anyhow!(
        "neither {} nor {} is present in the local Docker engine, and images are never pulled \
         (this machine reaches no registry); build {} from Debian's packages with \
         `scripts/pg-image` (or `cargo make pg-image`), `docker pull {}` where a registry is \
         reachable, or use --postgres local",
        options.image,
        options.fallback_image,
        options.fallback_image,
        options.image
    )
}

/// A running container; dropping it removes the container, then its data
/// volume and socket directory.
pub(crate) struct Running {
    container: Option<ContainerAsync<GenericImage>>,
    // Dropped after `Drop::drop` has removed the container: a volume in use
    // cannot be removed.
    _storage: Storage,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        // testcontainers removes the container in its Drop, which needs a
        // tokio runtime; provide one if the caller's is already gone.
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(container);
        } else if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            let _entered = rt.enter();
            drop(container);
        } else {
            std::mem::forget(container); // cannot remove it; the next start sweeps it
        }
    }
}

/// How the harness reaches the server.
enum Transport {
    /// A unix socket in this host directory, bind-mounted into a container
    /// without network (engines on this machine).
    Socket(PathBuf),
    /// The port published on 127.0.0.1, through docker-proxy (engines
    /// elsewhere, which cannot see a host directory).
    Published,
}

/// A container's data volume and, for [`Transport::Socket`], its socket
/// directory; dropping it removes both (best effort; the next start sweeps
/// what is left).
struct Storage {
    host: DockerHost,
    volume: String,
    socket_dir: Option<PathBuf>,
}

impl Storage {
    /// Creates the volume (labelled with its owner and socket directory),
    /// then, when `socket` is true, the socket directory: a directory never
    /// exists without the volume that names it, so sweeping volumes finds
    /// every directory.
    async fn create(engine: &DockerEngine, socket: bool) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Short, so the socket's path stays well within the 107 bytes a
        // unix socket address allows.
        let name = format!("{NAME_PREFIX}{}", &id[..16]);
        let dir = socket.then(|| std::env::temp_dir().join(&name));
        let mut labels = owner_labels();
        if let Some(dir) = &dir {
            labels.insert(SOCKET_DIR_LABEL.into(), dir.to_string_lossy().into_owned());
        }
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        };
        engine
            .client()
            .create_volume(request)
            .await
            .with_context(|| {
                format!(
                    "creating the data volume {name} on the {}",
                    engine.host.describe()
                )
            })?;
        let mut storage = Self {
            host: engine.host.clone(),
            volume: name,
            socket_dir: None,
        };
        if let Some(dir) = dir {
            create_socket_dir(&dir)?;
            storage.socket_dir = Some(dir);
        }
        Ok(storage)
    }

    fn transport(&self) -> Transport {
        match &self.socket_dir {
            Some(dir) => Transport::Socket(dir.clone()),
            None => Transport::Published,
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let host = self.host.clone();
        let volume = std::mem::take(&mut self.volume);
        // A client and runtime of its own on a thread of its own: this works
        // inside or outside the caller's runtime, whatever its flavor, and
        // never waits on a connection that runtime drives.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let engine = docker::probe(&host, CLEANUP_TIMEOUT).await.ok()?;
                let remove = engine
                    .client()
                    .remove_volume(&volume, None::<RemoveVolumeOptions>);
                tokio::time::timeout(CLEANUP_TIMEOUT, remove).await.ok()
            })
        })
        .join();
        if let Some(dir) = &self.socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Creates `dir` for the server's socket, writable by the container's
/// `postgres` user whatever its uid (and not sticky, so that this process
/// can remove what the server leaves in it).
fn create_socket_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)))
        .with_context(|| {
            format!(
                "creating the socket directory {} for the PostgreSQL container (set TMPDIR to a \
                 writable directory)",
                dir.display()
            )
        })
}

/// Starts `image` with `options.settings` and waits until it answers
/// `SELECT 1`. Returns the admin URL (`postgres` superuser, `postgres`
/// database; a unix socket directory, or 127.0.0.1 for an engine elsewhere)
/// and the container.
pub(crate) async fn start(
    engine: &DockerEngine,
    image: &str,
    options: &ProvisionOptions,
) -> anyhow::Result<(String, Running)> {
    let local = engine.host.is_local_socket();
    if local {
        sweep_orphans(engine).await;
    }
    let storage = Storage::create(engine, local).await?;
    let transport = storage.transport();

    let (name, tag) = split_image(image);
    let mut args = Vec::with_capacity(options.settings.len() * 2 + 6);
    let mut setting = |key: &str, value: &str| {
        args.push("-c".to_owned());
        args.push(format!("{key}={value}"));
    };
    for (key, value) in &options.settings {
        setting(key, value);
    }
    if let Transport::Socket(_) = transport {
        // Last, so that they win: the socket only, where it is mounted.
        setting("listen_addresses", "");
        setting("unix_socket_directories", SOCKET_TARGET);
        setting("port", &SOCKET_PORT.to_string());
    }
    let logs = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let sink = Arc::clone(&logs);
    let mut base =
        GenericImage::new(name, tag).with_wait_for(WaitFor::message_on_stderr(READY_LINE));
    if let Transport::Published = transport {
        base = base.with_exposed_port(PG_PORT.tcp());
    }
    let mut request = base
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_label(OWNER_LABEL, std::process::id().to_string())
        .with_label(PIDNS_LABEL, pid_namespace())
        .with_mount(Mount::volume_mount(storage.volume.clone(), DATA_TARGET))
        .with_cmd(args)
        .with_startup_timeout(STARTUP_TIMEOUT)
        .with_log_consumer(move |frame: &LogFrame| {
            let (LogFrame::StdOut(bytes) | LogFrame::StdErr(bytes)) = frame;
            let mut tail = sink.lock().unwrap_or_else(|p| p.into_inner());
            for line in String::from_utf8_lossy(bytes).lines() {
                if tail.len() == LOG_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.to_owned());
            }
        });
    request = match &transport {
        Transport::Socket(dir) => request
            .with_mount(Mount::bind_mount(dir.to_string_lossy(), SOCKET_TARGET))
            .with_host_config_modifier(|host| {
                host.network_mode = Some("none".into());
                host.publish_all_ports = Some(false);
                host.port_bindings = None;
            }),
        Transport::Published => request.with_host_config_modifier(|host| {
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(HashMap::from([(
                format!("{PG_PORT}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )]));
        }),
    };
    let log_tail = || {
        let tail = logs.lock().unwrap_or_else(|p| p.into_inner());
        Vec::from(tail.clone()).join("\n")
    };
    let failed = |what: String| {
        format!(
            "{what}; its last log lines:\n{}\n(to see it by hand: docker run --rm {image} {})",
            log_tail(),
            options
                .settings
                .iter()
                .map(|(k, v)| format!("-c {k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };

    let container = request.start().await.map_err(|e| {
        // testcontainers' message repeats the whole log; the tail is enough.
        let text = e.to_string();
        let cause = text.split(": [").next().unwrap_or(&text);
        anyhow!(failed(format!(
            "starting a PostgreSQL container from image {image} on the {} failed ({cause})",
            engine.host.describe()
        )))
    })?;
    let url = match &transport {
        Transport::Socket(dir) => socket_url(dir),
        Transport::Published => {
            let port = container
                .get_host_port_ipv4(PG_PORT.tcp())
                .await
                .with_context(|| {
                    format!("reading the host port of container {}", container.id())
                })?;
            format!("postgres://postgres@127.0.0.1:{port}/postgres")
        }
    };

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match select_one(&url).await {
            Ok(()) => {
                let running = Running {
                    container: Some(container),
                    _storage: storage,
                };
                return Ok((url, running));
            }
            Err(e) if Instant::now() >= deadline => bail!(failed(format!(
                "PostgreSQL in container {} (image {image}) did not answer SELECT 1 on {url} \
                 within {STARTUP_TIMEOUT:?}: {e}",
                container.id()
            ))),
            Err(_) => {}
        }
        if !container.is_running().await.unwrap_or(true) {
            bail!(failed(format!(
                "container {} (image {image}) exited while starting",
                container.id()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admin URL of a server whose socket is in `dir`:
/// `postgres://postgres@localhost:5433/postgres?host=%2Ftmp%2F…`. sqlx and
/// libpq take a `host` starting with `/` as the socket directory; the port
/// names the socket (`.s.PGSQL.5433`).
fn socket_url(dir: &Path) -> String {
    let mut url = Url::parse(&format!(
        "postgres://postgres@localhost:{SOCKET_PORT}/postgres"
    ))
    .expect("a constant URL");
    url.query_pairs_mut()
        .append_pair("host", &dir.to_string_lossy());
    url.into()
}

async fn select_one(url: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    conn.close().await
}

/// `postgres:15` → (`postgres`, `15`); `host:5000/pg` → (`host:5000/pg`, `latest`).
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// Removes containers and data volumes labelled with the pid of a process
/// that no longer exists (runs that were killed before they could clean
/// up), and the socket directories those volumes name. Best effort.
async fn sweep_orphans(engine: &DockerEngine) {
    let our_namespace = pid_namespace();
    if our_namespace.is_empty() {
        return; // cannot tell whose pids the labels hold
    }
    let by_owner = || Some(HashMap::from([("label".into(), vec![OWNER_LABEL.into()])]));
    let options = ListContainersOptions {
        all: true,
        filters: by_owner(),
        ..Default::default()
    };
    if let Ok(containers) = engine.client().list_containers(Some(options)).await {
        for container in containers {
            if !orphaned(container.labels.as_ref(), &our_namespace) {
                continue;
            }
            if let Some(id) = container.id.as_deref() {
                let remove = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                let _ = engine.client().remove_container(id, Some(remove)).await;
            }
        }
    }
    let options = ListVolumesOptions {
        filters: by_owner(),
    };
    let Ok(volumes) = engine.client().list_volumes(Some(options)).await else {
        return;
    };
    for volume in volumes.volumes.unwrap_or_default() {
        if !orphaned(Some(&volume.labels), &our_namespace) {
            continue;
        }
        let removed = engine
            .client()
            .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
            .await;
        // Only once the volume is gone: a volume still in use may belong to
        // a container that still serves on that socket.
        let dir = volume.labels.get(SOCKET_DIR_LABEL).map(Path::new);
        if let (Ok(()), Some(dir)) = (removed, dir.filter(|d| is_socket_dir(d))) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether `labels` name an owner in `our_namespace` that no longer exists.
fn orphaned(labels: Option<&HashMap<String, String>>, our_namespace: &str) -> bool {
    let label = |name| labels.and_then(|l| l.get(name));
    if label(PIDNS_LABEL).map(String::as_str) != Some(our_namespace) {
        return false; // another machine's or container's pids
    }
    let alive = label(OWNER_LABEL)
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists());
    !alive
}

/// Whether a path from a volume's label looks like a socket directory this
/// module made (an absolute path ending in `tasker-harness-pg.…`), so that
/// a stray label cannot make the sweep delete anything else.
fn is_socket_dir(dir: &Path) -> bool {
    dir.is_absolute()
        && dir
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(NAME_PREFIX))
}

/// The labels naming this process as the owner.
fn owner_labels() -> HashMap<String, String> {
    HashMap::from([
        (OWNER_LABEL.into(), std::process::id().to_string()),
        (PIDNS_LABEL.into(), pid_namespace()),
    ])
}

/// This process's pid namespace, e.g. `pid:[4026531836]` (empty if unknown).
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{is_socket_dir, socket_url, split_image};

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(split_image("postgres:15"), ("postgres", "15"));
        assert_eq!(split_image("tasker-postgres:15"), ("tasker-postgres", "15"));
        assert_eq!(split_image("postgres"), ("postgres", "latest"));
        assert_eq!(
            split_image("registry:5000/team/pg"),
            ("registry:5000/team/pg", "latest")
        );
    }

    #[test]
    fn socket_urls_name_the_directory() {
        assert_eq!(
            socket_url(Path::new("/tmp/tasker-harness-pg.0123")),
            "postgres://postgres@localhost:5433/postgres?host=%2Ftmp%2Ftasker-harness-pg.0123"
        );
    }

    #[test]
    fn only_our_socket_directories_are_swept() {
        assert!(is_socket_dir(Path::new("/tmp/tasker-harness-pg.0123")));
        assert!(!is_socket_dir(Path::new("tmp/tasker-harness-pg.0123")));
        assert!(!is_socket_dir(Path::new("/tmp/../tasker-harness-pg.0123")));
        assert!(!is_socket_dir(Path::new("/tmp/tasker-harness-pg.0123/..")));
        assert!(!is_socket_dir(Path::new("/home/someone")));
        assert!(!is_socket_dir(Path::new("/")));
    }
}
