//! What a container uses outside itself: its data volume on the engine and,
//! when the engine runs on this machine, the host directory its server's
//! socket is in.
//!
//! Kept apart from starting the container because its lifetime is not the
//! container's: both are made before the container starts and removed only
//! after it is gone (a volume in use cannot be removed), from a `Drop` that
//! must work with or without the caller's tokio runtime.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use testcontainers::bollard::models::VolumeCreateRequest;
use testcontainers::bollard::query_parameters::RemoveVolumeOptions;

use super::sweep::{owner_labels, NAME_PREFIX, SOCKET_DIR_LABEL};
use crate::provision::docker::{self, DockerEngine, DockerHost};

const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How the harness reaches the server.
pub(super) enum Transport {
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
pub(super) struct Storage {
    host: DockerHost,
    pub(super) volume: String,
    socket_dir: Option<PathBuf>,
}

impl Storage {
    /// Creates the volume (labelled with its owner and socket directory),
    /// then, when `socket` is true, the socket directory: a directory never
    /// exists without the volume that names it, so sweeping volumes finds
    /// every directory.
    pub(super) async fn create(engine: &DockerEngine, socket: bool) -> anyhow::Result<Self> {
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

    pub(super) fn transport(&self) -> Transport {
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
