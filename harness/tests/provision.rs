//! PostgreSQL provisioning, for real: a Docker container, a local cluster,
//! an existing server by URL, and `auto`'s choice between them.
//!
//! The container tests need the Docker engine and a PostgreSQL image
//! (`postgres:15`, or `tasker-postgres:15` from `scripts/pg-image`).
//! Environment variables are process-global and tests run on parallel
//! threads, so tests pass an explicit [`Environment`]; the code that reads
//! the real environment is run in a child process of this test binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection as _;
use tasker_harness::provision::docker::{self, DockerHost, EngineTooOld};
use tasker_harness::provision::{
    provision, provision_in, Backend, Environment, ProvisionOptions, Provisioned,
};
use testcontainers::bollard::models::VolumeCreateRequest;
use testcontainers::bollard::query_parameters::ListVolumesOptions;
use testcontainers::bollard::{Docker, API_DEFAULT_VERSION};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const MISSING_SOCKET: &str = "/nonexistent/tasker-harness-test/docker.sock";
const CHILD_ENV: &str = "TASKER_PROVISION_TEST_CHILD";

fn options_with(settings: &[(&str, &str)]) -> ProvisionOptions {
    ProvisionOptions {
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ProvisionOptions::default()
    }
}

fn env(database_url: Option<String>, docker_host: DockerHost) -> Environment {
    Environment {
        database_url,
        docker_host,
    }
}

async fn show(url: &str, setting: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    value
}

/// The socket directory of a container's URL (`...?host=%2Ftmp%2F...`).
fn socket_dir(admin_url: &str) -> PathBuf {
    let url = url::Url::parse(admin_url).unwrap();
    let (_, host) = url
        .query_pairs()
        .find(|(k, _)| k == "host")
        .unwrap_or_else(|| panic!("{admin_url} names no socket directory"));
    PathBuf::from(host.into_owned())
}

/// The socket of a container's URL: `<dir>/.s.PGSQL.<port>`.
fn socket_path(admin_url: &str) -> PathBuf {
    let port = url::Url::parse(admin_url).unwrap().port().unwrap();
    socket_dir(admin_url).join(format!(".s.PGSQL.{port}"))
}

/// A client of the Docker engine here, at the API version it negotiated.
async fn docker_client() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("a Docker client")
        .negotiate_version()
        .await
        .expect("the Docker engine here answers GET /version")
}

/// Names of the data volumes whose label names `dir` as their socket
/// directory.
async fn volumes_of(dir: &Path) -> Vec<String> {
    let filter = format!("tasker-harness.socket-dir={}", dir.display());
    let options = ListVolumesOptions {
        filters: Some(HashMap::from([("label".into(), vec![filter])])),
    };
    docker_client()
        .await
        .list_volumes(Some(options))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

/// Creates `database` through the admin URL and checks `url_for` reaches it.
async fn url_for_reaches_a_new_database(p: &Provisioned, database: &str) {
    let mut admin = sqlx::PgConnection::connect(&p.admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&p.url_for(database))
        .await
        .unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(current, database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_backend_runs_postgres_with_the_settings() {
    let options = options_with(&[
        ("fsync", "on"),
        ("work_mem", "7MB"),
        ("shared_preload_libraries", "pg_stat_statements"),
    ]);
    let environment = env(None, DockerHost::from_env());
    let p = provision_in(Backend::Container, &options, &environment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.backend, "container");
    assert!(
        p.reason
            .starts_with("container (--postgres container; image "),
        "{}",
        p.reason
    );
    // No docker-proxy: a unix socket in a host directory.
    assert!(
        p.admin_url
            .starts_with("postgres://postgres@localhost:5433/postgres?host=%2F"),
        "{}",
        p.admin_url
    );
    let dir = socket_dir(&p.admin_url);
    assert!(socket_path(&p.admin_url).exists(), "{}", p.admin_url);
    // PGDATA on a volume of its own, removed with the container.
    let volumes = volumes_of(&dir).await;
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert_eq!(show(&p.admin_url, "work_mem").await, "7MB");
    assert_eq!(show(&p.admin_url, "fsync").await, "on");
    assert_eq!(show(&p.admin_url, "synchronous_commit").await, "on");
    assert_eq!(
        show(&p.admin_url, "data_directory").await,
        "/var/lib/postgresql/data"
    );
    url_for_reaches_a_new_database(&p, "scenario_a").await;

    // The image has contrib's pg_stat_statements, which the harness reads.
    let mut conn = sqlx::PgConnection::connect(&p.admin_url).await.unwrap();
    sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&mut conn)
        .await
        .unwrap();
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_statements")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(calls > 0);
    conn.close().await.unwrap();

    let admin_url = p.admin_url.clone();
    drop(p);
    assert!(
        sqlx::PgConnection::connect(&admin_url).await.is_err(),
        "the server still answers after the container was dropped"
    );
    assert!(!dir.exists(), "{} is left after the drop", dir.display());
    assert_eq!(volumes_of(&dir).await, Vec::<String>::new());
}

#[tokio::test]
async fn container_backend_reports_the_servers_complaint() {
    let options = options_with(&[("tasker_no_such_setting", "1")]);
    let environment = env(None, DockerHost::from_env());
    let err = provision_in(Backend::Container, &options, &environment)
        .await
        .expect_err("PostgreSQL refuses unknown settings");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("unrecognized configuration parameter"),
        "{msg}"
    );
    assert!(msg.contains("-c tasker_no_such_setting=1"), "{msg}");
}

/// The container is removed even when the runtime that started it is gone.
#[test]
fn container_is_removed_when_dropped_outside_a_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let environment = env(None, DockerHost::from_env());
    let p = rt
        .block_on(provision_in(
            Backend::Container,
            &options_with(&[]),
            &environment,
        ))
        .unwrap_or_else(|e| panic!("{e:#}"));
    drop(rt);
    let socket = socket_path(&p.admin_url);
    let dir = socket_dir(&p.admin_url);
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "{}",
        socket.display()
    );
    drop(p);
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "{} still accepts connections after the container was dropped",
        socket.display()
    );
    assert!(!dir.exists(), "{} is left after the drop", dir.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(volumes_of(&dir)), Vec::<String>::new());
}

/// What a killed run leaves (a labelled data volume and its socket
/// directory) is removed when the next container starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_and_socket_directories_of_dead_owners_are_swept() {
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let pidns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let name = format!("tasker-harness-pg.test{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".s.PGSQL.5433.lock"), "left by a killed server").unwrap();
    let labels = HashMap::from([
        ("tasker-harness.owner-pid".to_string(), dead_pid.to_string()),
        (
            "tasker-harness.owner-pidns".to_string(),
            pidns.to_string_lossy().into_owned(),
        ),
        (
            "tasker-harness.socket-dir".to_string(),
            dir.to_string_lossy().into_owned(),
        ),
    ]);
    docker_client()
        .await
        .create_volume(VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(volumes_of(&dir).await, vec![name]);

    let environment = env(None, DockerHost::from_env());
    let p = provision_in(Backend::Container, &options_with(&[]), &environment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(volumes_of(&dir).await, Vec::<String>::new());
    assert!(!dir.exists(), "{} was not swept", dir.display());
    drop(p);
}

#[tokio::test]
async fn container_backend_without_an_image_says_how_to_build_one() {
    let options = ProvisionOptions {
        image: "tasker-no-such-image:1".into(),
        fallback_image: "tasker-no-such-image:2".into(),
        ..ProvisionOptions::default()
    };
    let environment = env(None, DockerHost::from_env());
    let err = provision_in(Backend::Container, &options, &environment)
        .await
        .expect_err("no image, so no container");
    let msg = format!("{err:#}");
    assert!(msg.contains("tasker-no-such-image:1"), "{msg}");
    assert!(msg.contains("tasker-no-such-image:2"), "{msg}");
    assert!(msg.contains("scripts/pg-image"), "{msg}");

    // auto takes that as a reason to use a local cluster.
    let p = provision_in(Backend::Auto, &options, &environment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.backend, "local");
    assert!(p.reason.starts_with("auto: local (Docker "), "{}", p.reason);
    assert!(
        p.reason.contains("neither tasker-no-such-image:1"),
        "{}",
        p.reason
    );
}

#[tokio::test]
async fn local_backend_runs_a_durable_cluster_with_the_settings() {
    let options = options_with(&[("work_mem", "7MB")]);
    let environment = env(None, DockerHost::parse(&format!("unix://{MISSING_SOCKET}")));
    let p = provision_in(Backend::Local, &options, &environment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.backend, "local");
    assert_eq!(show(&p.admin_url, "work_mem").await, "7MB");
    assert_eq!(show(&p.admin_url, "fsync").await, "on");
    url_for_reaches_a_new_database(&p, "scenario_b").await;

    // The url backend on that server: DATABASE_URL may name any database;
    // the admin URL is the server's `postgres` database.
    let environment = env(Some(p.url_for("scenario_b")), environment.docker_host);
    for backend in [Backend::Url, Backend::Auto] {
        let by_url = provision_in(backend, &options, &environment)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(by_url.backend, "url");
        assert!(
            by_url.reason.contains("1 requested setting(s) not applied"),
            "{}",
            by_url.reason
        );
        if backend == Backend::Auto {
            assert!(
                by_url.reason.starts_with("auto: url (DATABASE_URL is set"),
                "{}",
                by_url.reason
            );
        }
        assert_eq!(by_url.admin_url, p.admin_url);
        assert_eq!(by_url.url_for("scenario_b"), p.url_for("scenario_b"));
        assert_eq!(show(&by_url.admin_url, "work_mem").await, "7MB");
    }
}

#[tokio::test]
async fn auto_falls_back_to_local_when_docker_does_not_answer() {
    let host = DockerHost::parse(&format!("unix://{MISSING_SOCKET}"));
    let p = provision_in(Backend::Auto, &options_with(&[]), &env(None, host))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.backend, "local");
    let expected = format!("auto: local (Docker socket {MISSING_SOCKET} did not answer: ");
    assert!(p.reason.starts_with(&expected), "{}", p.reason);
    assert!(!p.reason.contains('\n'), "{}", p.reason);
    assert_eq!(show(&p.admin_url, "fsync").await, "on");
}

#[tokio::test]
async fn probe_names_the_socket_that_did_not_answer() {
    let timeout = Duration::from_millis(300);
    let missing = DockerHost::parse(&format!("unix://{MISSING_SOCKET}"));
    let err = docker::probe(&missing, timeout).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "Docker socket {MISSING_SOCKET} did not answer: it does not exist"
        )),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "").unwrap();
    let err = docker::probe(&DockerHost::Unix(file.clone()), timeout)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("it is not a socket"), "{err}");

    // A socket that accepts connections but never answers: the probe gives
    // up instead of hanging.
    let silent = dir.path().join("silent.sock");
    let _listener = tokio::net::UnixListener::bind(&silent).unwrap();
    let err = docker::probe(&DockerHost::Unix(silent.clone()), timeout)
        .await
        .unwrap_err();
    let expected = format!("Docker socket {} did not answer", silent.display());
    assert!(err.to_string().starts_with(&expected), "{err}");

    let err = docker::probe(&DockerHost::parse("ssh://somewhere"), timeout)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

/// A fake Docker engine on a unix socket: it answers `GET /version` (with
/// or without a version prefix) with `version` and, when given,
/// `api_version`, and `GET /_ping` with `OK`, one request per connection,
/// and records the paths it was asked for. It stops when dropped.
struct FakeDocker {
    host: DockerHost,
    socket: PathBuf,
    paths: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeDocker {
    fn start(dir: &Path, version: &str, api_version: Option<&str>) -> Self {
        let socket = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let mut body = serde_json::json!({ "Version": version, "Os": "linux" });
        if let Some(api) = api_version {
            body["ApiVersion"] = api.into();
            body["MinAPIVersion"] = "1.12".into();
        }
        let body = body.to_string();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&paths);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (body, seen) = (body.clone(), Arc::clone(&seen));
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let Ok(Some(request)) = lines.next_line().await else {
                        return;
                    };
                    while let Ok(Some(header)) = lines.next_line().await {
                        if header.is_empty() {
                            break;
                        }
                    }
                    let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let (status, content_type, body) = if path.ends_with("/version") {
                        ("200 OK", "application/json", body)
                    } else if path.ends_with("/_ping") {
                        ("200 OK", "text/plain", "OK".to_owned())
                    } else {
                        let message = r#"{"message":"page not found"}"#.to_owned();
                        ("404 Not Found", "application/json", message)
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: \
                         {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = write.write_all(response.as_bytes()).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        Self {
            host: DockerHost::parse(&format!("unix://{}", socket.display())),
            socket,
            paths,
            server,
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What the harness says of the fake Docker 1.0.1 (API 1.12) on `socket`.
fn too_old_message(socket: &Path) -> String {
    format!(
        "Docker socket {} answered, but it is Docker 1.0.1 with API 1.12, older than API 1.25 \
         (Docker 1.13) that the container backend needs; upgrade Docker or use --postgres local",
        socket.display()
    )
}

#[tokio::test]
async fn probe_negotiates_the_api_version_with_the_engine() {
    let timeout = Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();

    // Debian 12's Docker: the client comes down from bollard's default.
    let fake = FakeDocker::start(dir.path(), "20.10.24+dfsg1", Some("1.41"));
    let engine = docker::probe(&fake.host, timeout)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(engine.version, "20.10.24+dfsg1");
    assert_eq!(engine.api_version, "1.41");
    assert_eq!(engine.host, fake.host);
    assert!(
        fake.paths().iter().all(|p| p.ends_with("/version")),
        "{:?}",
        fake.paths()
    );
    assert!(!fake.paths().is_empty());
    drop(fake);

    // An engine newer than bollard: the client stays at bollard's default.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(dir.path(), "99.0.0", Some("1.99"));
    let engine = docker::probe(&fake.host, timeout)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(engine.api_version, API_DEFAULT_VERSION.to_string());
    drop(fake);

    // Something that answers /version without an API version.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(dir.path(), "0.0.1", None);
    let err = docker::probe(&fake.host, timeout).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Docker socket {} answered, but not with a Docker API version in GET /version (is it \
             a Docker engine?); point DOCKER_HOST at one or use --postgres local",
            fake.socket.display()
        )
    );
}

#[tokio::test]
async fn probe_refuses_an_engine_older_than_api_1_25() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(dir.path(), "1.0.1", Some("1.12"));
    let err = docker::probe(&fake.host, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), too_old_message(&fake.socket));
    let too_old = err
        .downcast_ref::<EngineTooOld>()
        .unwrap_or_else(|| panic!("not an EngineTooOld: {err:#}"));
    assert_eq!(too_old.version, "1.0.1");
    assert_eq!(too_old.api_version, "1.12");
}

#[tokio::test]
async fn container_backend_refuses_and_auto_falls_back_on_an_engine_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(dir.path(), "1.0.1", Some("1.12"));
    let environment = env(None, fake.host.clone());
    let options = ProvisionOptions {
        docker_probe_timeout: Duration::from_secs(5),
        ..options_with(&[])
    };
    let err = provision_in(Backend::Container, &options, &environment)
        .await
        .expect_err("an engine too old, so no container");
    assert_eq!(format!("{err:#}"), too_old_message(&fake.socket));

    let p = provision_in(Backend::Auto, &options, &environment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.backend, "local");
    assert_eq!(
        p.reason,
        format!("auto: local ({})", too_old_message(&fake.socket))
    );
    assert_eq!(show(&p.admin_url, "fsync").await, "on");
    // Only the version was asked: no image, volume or container requests.
    assert!(
        fake.paths().iter().all(|p| p.ends_with("/version")),
        "{:?}",
        fake.paths()
    );
}

#[tokio::test]
async fn container_backend_without_docker_names_the_socket_and_what_to_do() {
    let timeout = Duration::from_millis(300);
    let options = ProvisionOptions {
        docker_probe_timeout: timeout,
        ..options_with(&[])
    };
    let missing = env(None, DockerHost::parse(&format!("unix://{MISSING_SOCKET}")));
    let err = provision_in(Backend::Container, &options, &missing)
        .await
        .expect_err("no Docker, so no container");
    assert_eq!(
        format!("{err:#}"),
        format!(
            "the container backend needs a Docker engine: install and start Docker, set \
             DOCKER_HOST to where it listens, or use --postgres local: Docker socket \
             {MISSING_SOCKET} did not answer: it does not exist (is Docker installed and \
             running?)"
        )
    );

    // A socket file with no daemon behind it (one that stopped).
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let host = DockerHost::parse(&format!("unix://{}", stale.display()));
    let err = docker::probe(&host, timeout).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Docker socket {} did not answer: connection refused, nothing listens there (is the \
             Docker daemon running?)",
            stale.display()
        )
    );
    let err = provision_in(Backend::Container, &options, &env(None, host))
        .await
        .expect_err("no Docker, so no container");
    assert!(
        format!("{err:#}").starts_with("the container backend needs a Docker engine: "),
        "{err:#}"
    );

    // The same over TCP, on a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = DockerHost::parse(&format!("tcp://127.0.0.1:{port}"));
    let err = docker::probe(&host, timeout).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Docker engine at tcp://127.0.0.1:{port} did not answer: connection refused, nothing \
             listens there (is the Docker daemon running?)"
        )
    );
}

#[tokio::test]
async fn the_docker_engine_here_answers_the_probe() {
    let engine = docker::probe(&DockerHost::from_env(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!engine.version.is_empty());
    assert!(!engine.has_image("tasker-no-such-image:1").await.unwrap());
}

#[tokio::test]
async fn url_backend_without_database_url_names_the_variable() {
    let environment = env(None, DockerHost::from_env());
    let err = provision_in(Backend::Url, &options_with(&[]), &environment)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");

    let environment = env(Some("mysql://x@y/z".into()), DockerHost::from_env());
    let err = provision_in(Backend::Url, &options_with(&[]), &environment)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

/// Runs [`child_reads_the_process_environment`] in a child process with
/// `DOCKER_HOST` at a missing socket and no `DATABASE_URL`.
#[test]
fn provision_reads_docker_host_and_database_url_from_the_environment() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "child_reads_the_process_environment",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("DOCKER_HOST", format!("unix://{MISSING_SOCKET}"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
    let reason = format!("reason=auto: local (Docker socket {MISSING_SOCKET} did not answer");
    assert!(stdout.contains(&reason), "{stdout}");
    assert!(stdout.contains("url-error-names=DATABASE_URL"), "{stdout}");
}

/// Does nothing unless started by the test above.
#[tokio::test]
async fn child_reads_the_process_environment() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let options = options_with(&[]);
    let p = provision(Backend::Auto, &options)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.backend, "local");
    println!("reason={}", p.reason);
    let err = provision(Backend::Url, &options).await.unwrap_err();
    if err.to_string().contains("DATABASE_URL") {
        println!("url-error-names=DATABASE_URL");
    }
}

#[test]
fn provisioned_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Provisioned>();
}
