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
//! (its init-time server listens on no TCP port), so after that message we
//! also retry connecting until `SELECT 1` answers. The port is published on
//! 127.0.0.1 only, since authentication is `trust`.
//!
//! Containers carry their owner's pid as a label; containers of processes
//! that are gone (killed runs) are removed before a new one starts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use sqlx::Connection as _;
use testcontainers::bollard::models::PortBinding;
use testcontainers::bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};

use super::docker::DockerEngine;
use super::ProvisionOptions;

/// Log line of a PostgreSQL server that accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";
/// Label holding the pid of the process that started the container.
const OWNER_LABEL: &str = "tasker-harness.owner-pid";
/// Label holding that process's pid namespace (`pid:[4026531836]`): pids
/// are only compared within the namespace they came from.
const PIDNS_LABEL: &str = "tasker-harness.owner-pidns";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
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

/// A running container; dropping it removes the container.
pub(crate) struct Running {
    container: Option<ContainerAsync<GenericImage>>,
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
/// database, 127.0.0.1) and the container.
pub(crate) async fn start(
    engine: &DockerEngine,
    image: &str,
    options: &ProvisionOptions,
) -> anyhow::Result<(String, Running)> {
    if engine.host.is_local_socket() {
        sweep_orphans(engine).await;
    }
    let (name, tag) = split_image(image);
    let mut args = Vec::with_capacity(options.settings.len() * 2);
    for (key, value) in &options.settings {
        args.push("-c".to_owned());
        args.push(format!("{key}={value}"));
    }
    let logs = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let sink = Arc::clone(&logs);
    let request = GenericImage::new(name, tag)
        .with_exposed_port(PG_PORT.tcp())
        .with_wait_for(WaitFor::message_on_stderr(READY_LINE))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_label(OWNER_LABEL, std::process::id().to_string())
        .with_label(PIDNS_LABEL, pid_namespace())
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
        })
        .with_host_config_modifier(|host| {
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(HashMap::from([(
                format!("{PG_PORT}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )]));
        });
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
    let port = container
        .get_host_port_ipv4(PG_PORT.tcp())
        .await
        .with_context(|| format!("reading the host port of container {}", container.id()))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match select_one(&url).await {
            Ok(()) => {
                let running = Running {
                    container: Some(container),
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

/// Removes containers labelled with the pid of a process that no longer
/// exists (runs that were killed before they could clean up). Best effort.
async fn sweep_orphans(engine: &DockerEngine) {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".into(), vec![OWNER_LABEL.into()])])),
        ..Default::default()
    };
    let our_namespace = pid_namespace();
    if our_namespace.is_empty() {
        return; // cannot tell whose pids the labels hold
    }
    let Ok(containers) = engine.client().list_containers(Some(options)).await else {
        return;
    };
    for container in containers {
        let label = |name| container.labels.as_ref().and_then(|l| l.get(name));
        if label(PIDNS_LABEL) != Some(&our_namespace) {
            continue; // another machine's or container's pids
        }
        let alive = label(OWNER_LABEL)
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_none_or(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if let (false, Some(id)) = (alive, container.id.as_deref()) {
            let remove = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            let _ = engine.client().remove_container(id, Some(remove)).await;
        }
    }
}

/// This process's pid namespace, e.g. `pid:[4026531836]` (empty if unknown).
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::split_image;

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
}
