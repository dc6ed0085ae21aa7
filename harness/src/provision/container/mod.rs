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
//!
//! The backend is split by what each part is about: `image` decides which
//! local image to run (and words the error when there is none), `storage`
//! makes and removes what a container uses on the host and the engine (its
//! data volume and socket directory), and `sweep` owns the labels that name
//! a container's owner and removes what killed runs left behind. This file
//! keeps what starts the server and how the harness reaches it.

mod image;
mod storage;
mod sweep;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use sqlx::Connection as _;
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{IntoContainerPort as _, Mount, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};
use url::Url;

pub(crate) use self::image::{choose_image, no_image_error};
use self::storage::{Storage, Transport};
use self::sweep::{pid_namespace, sweep_orphans, OWNER_LABEL, PIDNS_LABEL};
use super::docker::DockerEngine;
use super::ProvisionOptions;

/// Log line of a PostgreSQL server that accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";
/// PGDATA in both images; the data volume is mounted there.
const DATA_TARGET: &str = "/var/lib/postgresql/data";
/// Where the socket directory is mounted in the container. Not
/// `/var/run/postgresql`, which the official image's entrypoint chowns.
const SOCKET_TARGET: &str = "/var/run/tasker-harness";
/// The port in the socket's name (`.s.PGSQL.5433`); see the module docs.
const SOCKET_PORT: u16 = 5433;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 30;
const PG_PORT: u16 = 5432;

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{socket_url, split_image};

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
}
