//! The labels that name a container's and a data volume's owner, and the
//! sweep that removes those of owners that are gone.
//!
//! A run killed with SIGKILL cannot remove its container, volume and socket
//! directory; the next run that starts a container does, and must remove
//! nothing else: only what carries our labels, with a pid from our pid
//! namespace that no longer exists, and only directories shaped like the
//! ones `storage` makes. Those rules are kept together here.

use std::collections::HashMap;
use std::path::{Component, Path};

use testcontainers::bollard::query_parameters::{
    ListContainersOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};

use crate::provision::docker::DockerEngine;

/// Label holding the pid of the process that started the container.
pub(super) const OWNER_LABEL: &str = "tasker-harness.owner-pid";
/// Label holding that process's pid namespace (`pid:[4026531836]`): pids
/// are only compared within the namespace they came from.
pub(super) const PIDNS_LABEL: &str = "tasker-harness.owner-pidns";
/// Label of a data volume: the host directory holding the server's socket.
pub(super) const SOCKET_DIR_LABEL: &str = "tasker-harness.socket-dir";
/// Prefix of the data volumes' names and of the socket directories' names.
pub(super) const NAME_PREFIX: &str = "tasker-harness-pg.";

/// Removes containers and data volumes labelled with the pid of a process
/// that no longer exists (runs that were killed before they could clean
/// up), and the socket directories those volumes name. Best effort.
pub(super) async fn sweep_orphans(engine: &DockerEngine) {
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
pub(super) fn owner_labels() -> HashMap<String, String> {
    HashMap::from([
        (OWNER_LABEL.into(), std::process::id().to_string()),
        (PIDNS_LABEL.into(), pid_namespace()),
    ])
}

/// This process's pid namespace, e.g. `pid:[4026531836]` (empty if unknown).
pub(super) fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::is_socket_dir;

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
