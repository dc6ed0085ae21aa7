//! The campaign in containers (`chaos --containers`): PostgreSQL and the
//! engine's processes each in a container of their own on a private Docker
//! network with fixed addresses, so that a worker can be cut off the
//! network mid-step (`docker network disconnect`) and reconnected at the
//! same address, and an orchestrator frozen with `docker pause`.
//!
//! Images are never pulled (no registry answers here). PostgreSQL runs
//! `tasker-postgres:15` (scripts/pg-image, built from Debian's packages);
//! the engine runs `tasker-engine:<hash>`, built here from this build's
//! binaries on that same Debian base. The harness reaches PostgreSQL
//! through a unix socket in a bind-mounted host directory; the engine's
//! containers reach it over the network. Everything is driven through the
//! `docker` command, and every container and network carries the owner's
//! pid, so those of a campaign that died are removed by the next one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::build::EngineBuild;

/// PostgreSQL's image, from scripts/pg-image.
pub const PG_IMAGE: &str = "tasker-postgres:15";
const OWNER_LABEL: &str = "tasker-chaos.owner-pid";
/// Where the PostgreSQL container puts its socket (bind-mounted).
const SOCKET_TARGET: &str = "/var/run/tasker-chaos";

/// Runs `docker <args>`; its stdout on success, its stderr in the error.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running docker (is Docker installed?)")?;
    if !output.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Whether a Docker engine answers here.
pub fn available() -> bool {
    docker(&["version", "--format", "{{.Server.Version}}"]).is_ok()
}

/// The engine's image for this build: `tasker-engine:<hash of the
/// binaries>`, built when missing on the base of [`PG_IMAGE`] (built by
/// scripts/pg-image when missing too).
pub fn engine_image(build: &EngineBuild) -> anyhow::Result<String> {
    let binaries = ["tasker-server", "tasker-worker"];
    let mut hash = Sha256::new();
    for name in binaries {
        let path = build.binary(name)?;
        hash.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    let tag = format!("tasker-engine:{}", &hex::encode(hash.finalize())[..12]);
    if docker(&["image", "inspect", &tag]).is_ok() {
        return Ok(tag);
    }
    if docker(&["image", "inspect", PG_IMAGE]).is_err() {
        eprintln!("chaos: building {PG_IMAGE} with scripts/pg-image (once)");
        let status = Command::new(build.source_dir.join("scripts/pg-image"))
            .status()
            .context("running scripts/pg-image")?;
        if !status.success() {
            bail!("scripts/pg-image failed: the containers need {PG_IMAGE}");
        }
    }
    eprintln!("chaos: building {tag} from this build's binaries");
    let context = tempfile::tempdir()?;
    for name in binaries {
        std::fs::copy(build.binary(name)?, context.path().join(name))?;
    }
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {PG_IMAGE}\nUSER root\nCOPY tasker-server tasker-worker /usr/local/bin/\n\
             WORKDIR /\nENTRYPOINT []\n"
        ),
    )?;
    docker(&[
        "build",
        "--quiet",
        "--tag",
        &tag,
        &context.path().to_string_lossy(),
    ])?;
    Ok(tag)
}

/// Removes the containers and networks of campaigns whose process is gone.
pub fn sweep_orphans() {
    let filter = format!("label={OWNER_LABEL}");
    let listed = |kind: &[&str]| -> Vec<(String, String)> {
        let mut args = kind.to_vec();
        args.extend(["--filter", &filter, "--format"]);
        args.push("{{.ID}} {{.Label \"tasker-chaos.owner-pid\"}}");
        docker(&args)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, pid)| (id.to_string(), pid.to_string()))
            .collect()
    };
    let gone = |pid: &str| {
        pid.parse::<i32>()
            .map_or(true, |p| !Path::new(&format!("/proc/{p}")).exists())
    };
    for (id, pid) in listed(&["ps", "-a"]) {
        if gone(&pid) {
            let _ = docker(&["rm", "-f", "-v", &id]);
        }
    }
    for (id, pid) in listed(&["network", "ls"]) {
        if gone(&pid) {
            let _ = docker(&["network", "rm", &id]);
        }
    }
}

/// The campaign's private network: a /24 of its own, so containers keep
/// their address when reconnected.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    /// The first three octets, e.g. `172.29.14`.
    prefix: String,
}

impl Network {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let owner = format!("{OWNER_LABEL}={}", std::process::id());
        // A subnet no other network uses: try a few.
        let mut last = None;
        for i in 0..32u32 {
            let prefix = format!(
                "172.{}.{}",
                28 + (std::process::id() + i) % 4,
                (std::process::id() / 4 + i * 7) % 250 + 1
            );
            let subnet = format!("{prefix}.0/24");
            match docker(&[
                "network", "create", "--subnet", &subnet, "--label", &owner, name,
            ]) {
                Ok(_) => {
                    return Ok(Self {
                        name: name.to_string(),
                        prefix,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried")).context("creating the campaign's Docker network")
    }

    /// The fixed address of host number `n` (2..254).
    pub fn address(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }

    pub fn remove(&self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// A container's `docker run` arguments before the image.
pub fn run_args(name: &str, network: &Network, address: &str) -> Vec<String> {
    [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        &network.name,
        "--ip",
        address,
        "--label",
        &format!("{OWNER_LABEL}={}", std::process::id()),
    ]
    .map(str::to_string)
    .to_vec()
}

/// Waits until `docker logs <name>` holds `line` more than `seen` times
/// (a restarted container keeps its earlier output).
pub async fn wait_for_log(name: &str, line: &str, seen: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if log_count(name, line) > seen {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "container {name} did not log {line:?} within 60 s; its last lines:\n{}",
        docker(&["logs", "--tail", "20", name]).unwrap_or_default()
    )
}

/// How often `line` appears in the container's output so far.
pub fn log_count(name: &str, line: &str) -> usize {
    Command::new("docker")
        .args(["logs", name])
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text).matches(line).count()
        })
        .unwrap_or(0)
}

/// PostgreSQL in a container on the campaign's network.
pub struct PgContainer {
    pub name: String,
    /// The host directory holding its socket.
    socket_dir: PathBuf,
    /// Its address on the network.
    pub address: String,
}

const PG_READY: &str = "database system is ready to accept connections";

impl PgContainer {
    pub async fn start(name: &str, network: &Network, socket_dir: &Path) -> anyhow::Result<Self> {
        super::create_shared_dir(socket_dir)?;
        let address = network.address(2);
        let mut args = run_args(name, network, &address);
        let mount = format!("{}:{SOCKET_TARGET}", socket_dir.display());
        args.extend(["-v", &mount, PG_IMAGE].map(str::to_string));
        for setting in [
            "unix_socket_directories=/var/run/tasker-chaos",
            "max_connections=100",
            "fsync=off",
        ] {
            args.extend(["-c".to_string(), setting.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)?;
        let pg = Self {
            name: name.to_string(),
            socket_dir: socket_dir.to_path_buf(),
            address,
        };
        wait_for_log(name, PG_READY, 0).await?;
        pg.wait_for_connections().await?;
        Ok(pg)
    }

    /// The harness's URL of `database` (the socket).
    pub fn url(&self, database: &str) -> String {
        let dir: String =
            url::form_urlencoded::byte_serialize(self.socket_dir.to_string_lossy().as_bytes())
                .collect();
        format!("postgres://postgres@localhost:5432/{database}?host={dir}")
    }

    /// The engine containers' URL of `database` (the network).
    pub fn network_url(&self, database: &str) -> String {
        format!("postgres://postgres@{}:5432/{database}", self.address)
    }

    async fn wait_for_connections(&self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match sqlx::PgConnection::connect(&self.url("postgres")).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context("PostgreSQL's container does not answer")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Fast shutdown (SIGINT: sessions ended, every commit flushed), down
    /// for `down_for`, started again.
    pub async fn restart(&self, down_for: Duration) -> anyhow::Result<()> {
        let seen = log_count(&self.name, PG_READY);
        docker(&["kill", "--signal", "INT", &self.name])?;
        docker(&["wait", &self.name])?;
        tokio::time::sleep(down_for).await;
        docker(&["start", &self.name])?;
        wait_for_log(&self.name, PG_READY, seen).await?;
        self.wait_for_connections().await
    }

    pub fn remove(&self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}
