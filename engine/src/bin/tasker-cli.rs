//! tasker-cli: validate templates, and create and read tasks through the
//! REST API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;
use tasker_engine::template::TaskTemplate;
use tasker_engine::TaskRequest;

#[derive(Parser)]
#[command(version, about = "Tasker command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Task templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Tasks, through a tasker-server's REST API.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Dead letters: tasks the staleness detector gave up on.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List the dead-lettered tasks with the reason.
    List {
        #[arg(long, env = "TASKER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Put a dead-lettered task back: its failed and dead-lettered steps
    /// run again with a fresh budget of attempts.
    Retry {
        #[arg(long, env = "TASKER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        task_uuid: String,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Check template files; exits 1 and prints every problem if any is bad.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Create a task from a registered template.
    Create {
        #[arg(long, env = "TASKER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "1.0.0")]
        version: String,
        /// The task context, as JSON.
        #[arg(long, default_value = "{}")]
        context: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Delete a finished task with its steps and history; or, with
    /// --finished-before, every task that finished before that time (in
    /// calls of --limit tasks until none is left).
    Delete {
        #[arg(long, env = "TASKER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(
            required_unless_present = "finished_before",
            conflicts_with = "finished_before"
        )]
        task_uuid: Option<String>,
        /// An RFC 3339 time, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        finished_before: Option<String>,
        /// Tasks deleted a call (1 to 10,000).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Show a task, and its steps with --steps.
    Get {
        #[arg(long, env = "TASKER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        task_uuid: String,
        #[arg(long)]
        steps: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Template(TemplateCommand::Validate { files }) => validate(&files),
        Command::Task(command) => task(command).await,
        Command::Dlq(command) => dlq(command).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut bad = 0;
    for file in files {
        match TaskTemplate::load_file(file) {
            Ok(template) => println!(
                "ok: {} ({}, {} steps)",
                file.display(),
                template.key(),
                template.steps.len()
            ),
            Err(error) => {
                bad += 1;
                eprintln!("{error}");
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} of {} template files are invalid", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn task(command: TaskCommand) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::new();
    match command {
        TaskCommand::Create {
            url,
            namespace,
            name,
            version,
            context,
            idempotency_key,
        } => {
            let context: Value =
                serde_json::from_str(&context).context("--context is not valid JSON")?;
            let mut request = TaskRequest::new(&namespace, &name, &version, context);
            request.idempotency_key = idempotency_key;
            let response = send(http.post(format!("{url}/v1/tasks")).json(&request), &url).await?;
            print_response(response).await
        }
        TaskCommand::Delete {
            url,
            task_uuid: Some(task_uuid),
            ..
        } => {
            let response = send(http.delete(format!("{url}/v1/tasks/{task_uuid}")), &url).await?;
            print_response(response).await
        }
        TaskCommand::Delete {
            url,
            task_uuid: None,
            finished_before,
            limit,
        } => {
            let before = finished_before.context("--finished-before or a task UUID is needed")?;
            let endpoint = reqwest::Url::parse_with_params(
                &format!("{url}/v1/tasks"),
                [
                    ("finished_before", before.clone()),
                    ("limit", limit.to_string()),
                ],
            )
            .with_context(|| format!("--url {url} is not a URL"))?;
            let mut total = 0;
            loop {
                let response = send(http.delete(endpoint.clone()), &url).await?;
                let body = json_body(response).await?;
                let deleted = body["deleted"].as_i64().unwrap_or(0);
                total += deleted;
                if deleted < limit {
                    break;
                }
            }
            println!(
                "{}",
                serde_json::json!({"deleted": total, "finished_before": before})
            );
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Get {
            url,
            task_uuid,
            steps,
        } => {
            let path = if steps {
                format!("{url}/v1/tasks/{task_uuid}/workflow_steps")
            } else {
                format!("{url}/v1/tasks/{task_uuid}")
            };
            let response = send(http.get(path), &url).await?;
            print_response(response).await
        }
    }
}

async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::new();
    let (url, request) = match &command {
        DlqCommand::List { url } => (url, http.get(format!("{url}/v1/dlq"))),
        DlqCommand::Retry { url, task_uuid } => {
            (url, http.post(format!("{url}/v1/dlq/{task_uuid}/retry")))
        }
    };
    let response = send(request, url).await?;
    print_response(response).await
}

/// Send a request to tasker-server at `url`.
async fn send(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<reqwest::Response> {
    request
        .send()
        .await
        .with_context(|| format!("cannot reach tasker-server at {url}"))
}

/// Print a successful body as pretty JSON; fail with the API's message.
async fn print_response(response: reqwest::Response) -> anyhow::Result<ExitCode> {
    let body = json_body(response).await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}

/// A successful answer's JSON body; an error with the API's message.
async fn json_body(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .context("the server's answer is not JSON")?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("server answered {status}: {message}");
    }
    Ok(body)
}
