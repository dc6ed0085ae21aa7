//! tokio-postgres connections for the floor and the server timings, on the
//! same URL an engine scenario gets (unix socket when the URL names one),
//! with the notifications they receive forwarded to a channel.

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

/// A connection: its client, the notifications it receives (after a
/// LISTEN), and the task driving it. Dropping the client closes it; the
/// channel then ends.
pub struct Connection {
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<Notification>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The harness's URLs as a tokio-postgres config. They are
/// `postgres://user[:password]@host[:port]/database[?host=/socket/dir]`:
/// libpq's `host` parameter names the unix socket's directory and wins
/// over the URL's host, as it does for sqlx (tokio-postgres would try
/// both, TCP first).
pub fn config(url: &str, application: &str) -> anyhow::Result<Config> {
    let parsed = url::Url::parse(url).context("the database URL is not a URL")?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        bail!(
            "the database URL's scheme is {}, not postgres",
            parsed.scheme()
        );
    }
    let mut config = Config::new();
    config.application_name(application);
    if !parsed.username().is_empty() {
        config.user(decode(parsed.username())?);
    }
    if let Some(password) = parsed.password() {
        config.password(decode(password)?);
    }
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        config.dbname(decode(database)?);
    }
    let mut host = parsed.host_str().map(str::to_string);
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "host" => host = Some(value.into_owned()),
            "sslmode" if value != "disable" && value != "prefer" => {
                bail!("sslmode={value}: the floor connects without TLS")
            }
            _ => {}
        }
    }
    config.host(host.as_deref().unwrap_or("localhost"));
    config.port(parsed.port().unwrap_or(5432));
    Ok(config)
}

/// `%XX` escapes decoded (URL user, password and path).
fn decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).context("a % escape is cut short")?;
            out.push(u8::from_str_radix(hex, 16).context("a % escape is not hex")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("a decoded URL part is not UTF-8")
}

/// Connects, and forwards the connection's notifications to its channel.
pub async fn connect(url: &str, application: &str) -> anyhow::Result<Connection> {
    let config = config(url, application)?;
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("{application}: connecting with tokio-postgres"))?;
    let (sender, notifications) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        // Ends when the client is dropped or the connection fails; the
        // channel's end then tells the connection's loop.
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification);
            }
        }
    });
    Ok(Connection {
        client,
        notifications,
        driver,
    })
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::Host;

    use super::config;

    #[test]
    fn the_host_parameter_names_the_socket_directory_and_wins() {
        let c = config(
            "postgres://postgres@localhost:5433/bench_x?host=%2Ftmp%2Ftasker-pg-ab%20c",
            "t",
        )
        .unwrap();
        assert_eq!(c.get_hosts(), [Host::Unix("/tmp/tasker-pg-ab c".into())]);
        assert_eq!(c.get_ports(), [5433]);
        assert_eq!(c.get_user(), Some("postgres"));
        assert_eq!(c.get_dbname(), Some("bench_x"));
        assert_eq!(c.get_application_name(), Some("t"));
    }

    #[test]
    fn a_tcp_url_keeps_its_host_port_and_password() {
        let c = config("postgres://u:p%40ss@127.0.0.1:5999/db", "t").unwrap();
        assert_eq!(c.get_hosts(), [Host::Tcp("127.0.0.1".into())]);
        assert_eq!(c.get_ports(), [5999]);
        assert_eq!(c.get_password(), Some(&b"p@ss"[..]));
        assert!(config("postgres://u@h/db?sslmode=require", "t").is_err());
        assert!(config("mysql://u@h/db", "t").is_err());
    }
}
