//! The cluster's tests: they start real servers (the shared one and their
//! own), so they need the PostgreSQL server binaries.

use std::fs;
use std::path::Path;
use std::thread;

use crate::bindir::{has_server_binaries, highest_versioned_bindir};
use crate::cluster::percent_encode;
use crate::stale::{process_exists, sweep_stale_dirs, OWNER_FILE};
use crate::*;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

async fn select_one(url: &str) -> i32 {
    let pool = pool(url).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    one
}

#[test]
fn shared_cluster_is_started_once() {
    let a = shared().expect("start shared cluster");
    let b = shared().expect("shared cluster again");
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.socket_dir(), b.socket_dir());
    assert!(a.socket_dir().join(".s.PGSQL.5432").exists());
    assert!(a.pid().is_some());
}

#[tokio::test]
async fn sqlx_connects_over_the_unix_socket() {
    let cluster = shared().expect("start shared cluster");
    let url = cluster.admin_url();
    assert!(url.starts_with("postgres://tasker@localhost:5432/postgres?host=%2F"));

    let pool = pool(&url).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fsync, "off");
    let row = sqlx::query(
        "SELECT inet_server_addr() IS NULL AS unix_socket, current_user::text AS usr, \
         current_setting('full_page_writes') AS fpw, \
         current_setting('synchronous_commit') AS sc",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(row.get::<bool, _>("unix_socket"), "connected over TCP");
    assert_eq!(row.get::<String, _>("usr"), SUPERUSER);
    assert_eq!(row.get::<String, _>("fpw"), "off");
    assert_eq!(row.get::<String, _>("sc"), "on");
    pool.close().await;
}

#[tokio::test]
async fn independent_cluster_runs_alongside_shared() {
    let shared = shared().expect("start shared cluster");
    let own = LocalCluster::start(&ClusterOptions::default()).expect("start own cluster");
    assert_ne!(own.socket_dir(), shared.socket_dir());
    assert!(own
        .server_version()
        .starts_with(|c: char| c.is_ascii_digit()));

    let (shared_url, own_url) = (shared.admin_url(), own.admin_url());
    let (a, b) = tokio::join!(select_one(&shared_url), select_one(&own_url));
    assert_eq!((a, b), (1, 1));

    let pool = pool(&own.admin_url()).await;
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fsync, "on");
    pool.close().await;
}

#[test]
fn extra_settings_are_applied() {
    let opts = ClusterOptions {
        fsync: false,
        settings: vec![("work_mem".into(), "7MB".into())],
    };
    let cluster = LocalCluster::start(&opts).expect("start cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let work_mem: String = rt.block_on(async {
        let pool = pool(&cluster.admin_url()).await;
        let v = sqlx::query_scalar("SHOW work_mem")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    });
    assert_eq!(work_mem, "7MB");
}

#[test]
fn drop_stops_server_and_removes_directory() {
    let cluster = LocalCluster::start(&ClusterOptions::for_tests()).expect("start cluster");
    let dir = cluster.socket_dir().to_path_buf();
    let pid = cluster.pid().expect("running") as i32;
    assert!(dir.join("data").is_dir());
    assert!(process_exists(pid));

    drop(cluster);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!process_exists(pid), "postgres {pid} still running");
}

#[test]
fn server_survives_the_thread_that_started_it() {
    let cluster = thread::spawn(|| LocalCluster::start(&ClusterOptions::for_tests()))
        .join()
        .unwrap()
        .expect("start cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(rt.block_on(select_one(&cluster.admin_url())), 1);
    }
    let pid = cluster.pid().expect("running") as i32;
    assert!(process_exists(pid));
}

#[test]
fn failed_start_reports_log_tail_and_cleans_up() {
    let opts = ClusterOptions {
        fsync: false,
        settings: vec![("tasker_no_such_setting".into(), "1".into())],
    };
    let err = LocalCluster::start(&opts).unwrap_err();
    let PostgresError::StartFailed { dir, log_tail, .. } = &err else {
        panic!("expected StartFailed, got {err:?}");
    };
    assert!(log_tail.contains("tasker_no_such_setting"), "{err}");
    assert!(err.to_string().contains("postgres exited"), "{err}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn bogus_bindir_names_the_install_command() {
    let err = find_bindir(Some(Path::new("/nonexistent/tasker-pg-bin"))).unwrap_err();
    assert!(
        matches!(err, PostgresError::BinariesNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("initdb, postgres"), "{msg}");
    assert!(
        msg.contains("TASKER_PG_BINDIR=/nonexistent/tasker-pg-bin"),
        "{msg}"
    );
    assert!(msg.contains("apt-get install postgresql"), "{msg}");
}

#[test]
fn discovery_without_override_finds_binaries() {
    let dir = find_bindir(None).expect("PostgreSQL installed on this machine");
    assert!(has_server_binaries(&dir));
}

#[test]
fn highest_version_wins() {
    let root = tempfile::tempdir().unwrap();
    for v in ["9.6", "13", "15", "16", "notaversion"] {
        let bin = root.path().join(v).join("bin");
        fs::create_dir_all(&bin).unwrap();
        if v != "16" {
            // 16 has no binaries, so it must be skipped.
            fs::File::create(bin.join("initdb")).unwrap();
            fs::File::create(bin.join("postgres")).unwrap();
        }
    }
    assert_eq!(
        highest_versioned_bindir(root.path()),
        Some(root.path().join("15").join("bin"))
    );
}

#[test]
fn sweep_removes_only_dirs_of_dead_servers() {
    let base = tempfile::tempdir().unwrap();
    // Above any pid_max, so no such process can exist.
    let dead = "999999999\n";
    let alive = format!("{}\n", std::process::id());
    let make = |name: &str, owner: Option<&str>, postmaster: Option<&str>| {
        let dir = base.path().join(name);
        fs::create_dir_all(dir.join("data")).unwrap();
        if let Some(pid) = owner {
            fs::write(dir.join(OWNER_FILE), pid).unwrap();
        }
        if let Some(pid) = postmaster {
            fs::write(dir.join("data").join("postmaster.pid"), pid).unwrap();
        }
        dir
    };
    let dead_server = make("tasker-pg-dead01", Some(&alive), Some(dead));
    let dead_owner = make("tasker-pg-dead02", Some(dead), None);
    let live_server = make("tasker-pg-live01", Some(dead), Some(&alive));
    let live_owner = make("tasker-pg-live02", Some(&alive), None);
    let no_pids = make("tasker-pg-nopid1", None, None);
    let garbage = make("tasker-pg-junk01", Some("junk"), Some("not a pid\n"));
    let other = make("other-dir", Some(dead), Some(dead));

    sweep_stale_dirs(base.path());
    assert!(!dead_server.exists());
    assert!(!dead_owner.exists());
    for kept in [&live_server, &live_owner, &no_pids, &garbage, &other] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
}

#[test]
fn url_percent_encodes_socket_dir() {
    assert_eq!(
        percent_encode("/tmp/tasker-pg-a_B~1"),
        "%2Ftmp%2Ftasker-pg-a_B~1"
    );
    assert_eq!(percent_encode("a b+c"), "a%20b%2Bc");
}

#[test]
fn options_defaults() {
    let d = ClusterOptions::default();
    assert!(d.fsync);
    assert!(d.settings.is_empty());
    let t = ClusterOptions::for_tests();
    assert!(!t.fsync);
    assert!(t
        .settings
        .contains(&("full_page_writes".to_owned(), "off".to_owned())));
    assert!(!t.settings.iter().any(|(k, _)| k == "synchronous_commit"));
}
