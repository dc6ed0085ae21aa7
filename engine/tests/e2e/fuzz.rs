//! Property-based fuzzing (proptest) of the two places outside input
//! enters: the template parser and the API's request decoding. The kept
//! corpus is `tests/fuzz-corpus/` (inputs that once mattered, replayed
//! first) plus proptest's own regression files (`tests/e2e/fuzz.txt`),
//! where a failing case is saved and replayed on every run.
//!
//! Cases per property: `PROPTEST_CASES` (default 256 here; the issue's
//! figures were taken with more, see docs/reliability.md).

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{json, Value};
use tasker_engine::api::{app, ApiState};
use tasker_engine::TaskTemplate;
use tower::ServiceExt;

use crate::{scenario, start};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz corpus")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("txt"))),
        ..Config::default()
    }
}

/// A scenario template with one line deleted, doubled, or with a token
/// replaced by arbitrary text: mostly almost-valid templates.
fn mutated_template() -> impl Strategy<Value = String> {
    let sources: Vec<String> = ["linear", "diamond", "conditional", "complex_dag"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("../scenarios/templates/{f}.yaml")),
            )
            .unwrap()
        })
        .collect();
    (
        prop::sample::select(sources),
        any::<prop::sample::Index>(),
        0..3u8,
        "[ -~\u{0}\u{e9}]{0,16}",
    )
        .prop_map(|(text, at, how, token)| {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let i = at.index(lines.len());
            match how {
                0 => {
                    lines.remove(i);
                }
                1 => lines.insert(i, lines[i].clone()),
                _ => {
                    let line = &lines[i];
                    let keep = line.find(':').map_or(0, |c| c + 1);
                    lines[i] = format!("{} {token}", &line[..keep]);
                }
            }
            lines.join("\n")
        })
}

fn check_template(text: &str) -> Result<(), TestCaseError> {
    match TaskTemplate::from_yaml_str(text, "fuzz.yaml") {
        Ok(template) => {
            // A template that loads is valid and survives a round trip.
            let back = serde_json::to_string(&template).unwrap();
            let again = TaskTemplate::from_yaml_str(&back, "roundtrip").unwrap();
            prop_assert_eq!(again, template);
        }
        Err(error) => prop_assert!(error.to_string().starts_with("fuzz.yaml: "), "{}", error),
    }
    Ok(())
}

#[test]
fn the_template_parser_never_panics_and_names_the_file() {
    for (name, bytes) in corpus().into_iter().filter(|(n, _)| n.ends_with(".yaml")) {
        check_template(&String::from_utf8_lossy(&bytes))
            .unwrap_or_else(|e| panic!("corpus {name}: {e}"));
    }
    let mut runner = TestRunner::new(config());
    runner
        .run(&mutated_template(), |text| check_template(&text))
        .unwrap();
    runner
        .run(&"\\PC{0,200}", |text| check_template(&text))
        .unwrap();
    eprintln!(
        "fuzzed the template parser: {} cases each of mutated templates and random text",
        runner.config().cases
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~\u{0}\u{e9}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_\u{0}]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Each field of a task request: absent, valid, or any JSON value.
fn request_body() -> impl Strategy<Value = Value> {
    let field = |valid: Value| {
        prop_oneof![
            2 => Just(Some(valid)),
            1 => Just(None),
            1 => json_value().prop_map(Some),
        ]
    };
    (
        field(json!("linear")),
        field(json!("linear_workflow")),
        field(json!("1.0.0")),
        field(json!({"even_number": 2})),
        field(json!(0)),
        field(json!("key")),
        field(json!({})),
    )
        .prop_map(|fields| {
            let names = [
                "namespace",
                "name",
                "version",
                "context",
                "priority",
                "idempotency_key",
                "tags",
            ];
            let values = [
                fields.0, fields.1, fields.2, fields.3, fields.4, fields.5, fields.6,
            ];
            let mut body = serde_json::Map::new();
            for (name, value) in names.into_iter().zip(values) {
                if let Some(value) = value {
                    body.insert(name.to_string(), value);
                }
            }
            Value::Object(body)
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_any_request_body_with_a_4xx_or_success_never_a_5xx() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let router = app(ApiState::new(engine.client.clone()));
    let post = |body: Vec<u8>| {
        let router = router.clone();
        async move {
            let request = Request::builder()
                .method("POST")
                .uri("/v1/tasks")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).ok())
        }
    };
    let judge = |status: StatusCode, answer: Option<Value>| -> Result<(), TestCaseError> {
        prop_assert!(!status.is_server_error(), "{} {:?}", status, answer);
        if status.is_client_error() {
            let message = answer.as_ref().and_then(|a| a["error"]["message"].as_str());
            prop_assert!(message.is_some_and(|m| !m.is_empty()), "{:?}", answer);
        }
        Ok(())
    };
    for (name, bytes) in corpus().into_iter().filter(|(n, _)| n.ends_with(".json")) {
        let (status, answer) = post(bytes).await;
        judge(status, answer).unwrap_or_else(|e| panic!("corpus {name}: {e}"));
    }
    let handle = tokio::runtime::Handle::current();
    let cases = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(config());
        runner
            .run(&request_body(), |body| {
                let (status, answer) = handle.block_on(post(body.to_string().into_bytes()));
                judge(status, answer)
            })
            .map_err(|e| e.to_string())?;
        runner
            .run(&prop::collection::vec(any::<u8>(), 0..64), |bytes| {
                let (status, answer) = handle.block_on(post(bytes));
                judge(status, answer)
            })
            .map_err(|e| e.to_string())?;
        Ok::<u32, String>(runner.config().cases)
    })
    .unwrap();
    eprintln!("fuzzed the API's request decoding: {cases} structured bodies and {cases} random byte strings");
    engine.shutdown().await;
}
