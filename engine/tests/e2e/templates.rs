//! Bad templates are refused with messages naming the file and the step:
//! by `tasker-cli template validate`, and by the engine at start.

use std::path::PathBuf;
use std::process::Command;

use tasker_engine::HandlerRegistry;

fn bad(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/testdata/bad_templates")
        .join(name)
}

fn validate(files: &[PathBuf]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tasker-cli"))
        .args(["template", "validate"])
        .args(files)
        .output()
        .expect("tasker-cli runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cli_accepts_every_scenario_template() {
    let files: Vec<PathBuf> = std::fs::read_dir(tasker_scenarios::templates_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let (ok, stdout, stderr) = validate(&files);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        9,
        "{stdout}"
    );
}

#[test]
fn cli_refuses_bad_templates_naming_file_and_step() {
    let cases = [
        ("cycle.yaml", vec!["cycle"]),
        ("unknown_dependency.yaml", vec!["unknown step"]),
        ("duplicate_step.yaml", vec!["duplicate"]),
        ("missing_handler.yaml", vec!["callable"]),
        ("unknown_field.yaml", vec!["unknown field"]),
        ("not_yaml.yaml", vec!["not_yaml.yaml"]),
    ];
    for (file, needles) in cases {
        let (ok, _, stderr) = validate(&[bad(file)]);
        assert!(!ok, "{file} should be refused");
        assert!(
            stderr.contains(file),
            "{file}: message should name the file: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.to_lowercase().contains(needle),
                "{file}: expected '{needle}' in: {stderr}"
            );
        }
    }
    // One bad file among good ones still fails the whole run, and the good
    // ones are reported.
    let (ok, stdout, _) = validate(&[
        tasker_scenarios::templates_dir().join("linear.yaml"),
        bad("cycle.yaml"),
    ]);
    assert!(!ok);
    assert!(stdout.contains("linear.yaml"));
}

#[tokio::test]
async fn the_engine_refuses_a_template_without_its_handler() {
    let database = tasker_engine::testing::test_database().await.unwrap();
    let template = crate::scenario("linear_workflow");
    let error = tasker_engine::Embedded::start(
        &database.url,
        crate::test_config(),
        &[template],
        HandlerRegistry::new(),
    )
    .await
    .err()
    .expect("start refused")
    .to_string();
    assert!(
        error.contains("linear_step_1") && error.contains("linear.square"),
        "{error}"
    );
}
