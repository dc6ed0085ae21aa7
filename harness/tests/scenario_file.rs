//! Scenario files with errors are refused naming the file and the field.

use std::path::PathBuf;

use tasker_harness::scenario;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiers.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn error_of(text: &str) -> String {
    let (_dir, path) = write(text);
    format!("{:#}", scenario::load(&path).unwrap_err())
}

const GOOD: &str = r#"
[[scenario]]
name = "linear"
tier = 1
template = "linear_workflow"
context = { even_number = 2 }
expect = { step = "linear_step_4", result = 65536 }
latency = { samples = 10, warmup = 1 }
"#;

#[test]
fn the_shipped_file_loads_and_tier_one_is_the_default() {
    let all = scenario::load(&scenario::default_path()).unwrap();
    assert!(all.iter().any(|s| s.name == "linear" && s.tier == 1));
    let picked = scenario::select(all.clone(), &[], &[]).unwrap();
    assert!(!picked.is_empty() && picked.iter().all(|s| s.tier == 1));
    let by_name = scenario::select(all, &[], &["conditional".to_string()]).unwrap();
    assert_eq!(by_name.len(), 1);
}

#[test]
fn a_good_file_loads() {
    let (_dir, path) = write(GOOD);
    let scenarios = scenario::load(&path).unwrap();
    assert_eq!(
        scenarios[0].context_json(),
        serde_json::json!({"even_number": 2})
    );
}

#[test]
fn rows_are_optional_and_the_batch_tier_has_them() {
    let (_dir, path) = write(GOOD);
    assert_eq!(scenario::load(&path).unwrap()[0].rows, None);
    let (_dir, path) = write(&GOOD.replace("tier = 1", "tier = 1\nrows = 1000"));
    assert_eq!(scenario::load(&path).unwrap()[0].rows, Some(1000));
    let all = scenario::load(&scenario::default_path()).unwrap();
    let tier5 = scenario::select(all, &[5], &[]).unwrap();
    let rows: Vec<(&str, Option<u64>)> = tier5.iter().map(|s| (s.name.as_str(), s.rows)).collect();
    assert_eq!(
        rows,
        [
            ("batch_1000_rows", Some(1000)),
            ("batch_100k_rows", Some(100_000))
        ]
    );
}

#[test]
fn errors_name_the_file_and_the_field() {
    let cases = [
        (GOOD.replace("tier = 1", "tier = 9"), "tier"),
        (
            GOOD.replace("linear_workflow", "no_such_workflow"),
            "no_such_workflow",
        ),
        (GOOD.replace("linear_step_4", "no_step"), "expect.step"),
        (
            GOOD.replace("samples = 10", "samples = 0"),
            "latency.samples",
        ),
        (
            GOOD.replace("warmup = 1", "warmup = 1, sampels = 3"),
            "sampels",
        ),
        (GOOD.replace("tier = 1", "tier = \"one\""), "tier"),
        (GOOD.replace("tier = 1", "tier = 1\nrows = 0"), "rows"),
        (
            GOOD.replace("tier = 1", "tier = 1\nrows = \"many\""),
            "rows",
        ),
        (format!("{GOOD}{GOOD}"), "used twice"),
    ];
    for (text, needle) in cases {
        let error = error_of(&text);
        assert!(error.contains("tiers.toml"), "no file in: {error}");
        assert!(error.contains(needle), "'{needle}' not in: {error}");
    }
    let error = scenario::select(
        scenario::load(&write(GOOD).1).unwrap(),
        &[],
        &["nope".into()],
    )
    .unwrap_err();
    assert!(error.to_string().contains("nope") && error.to_string().contains("linear"));
}

#[test]
fn floor_scenarios_run_dags_of_standard_steps_without_expectations() {
    let all = scenario::load(&scenario::default_path()).unwrap();
    let tier1 = scenario::select(all, &[1], &[]).unwrap();
    let floors: Vec<(&str, &str)> = tier1
        .iter()
        .filter(|s| s.topology == scenario::Topology::Floor)
        .map(|s| (s.name.as_str(), s.template.as_str()))
        .collect();
    assert_eq!(
        floors,
        [
            ("floor_linear", "linear_workflow"),
            ("floor_diamond", "diamond_workflow")
        ]
    );
    let floor = r#"
[[scenario]]
name = "floor_linear"
tier = 1
template = "linear_workflow"
topology = { kind = "floor" }
latency = { samples = 10, warmup = 1 }
"#;
    let (_dir, path) = write(floor);
    assert_eq!(
        scenario::load(&path).unwrap()[0].topology,
        scenario::Topology::Floor
    );
    let with_expect = floor.replace(
        "tier = 1",
        "tier = 1\nexpect = { step = \"linear_step_4\", result = 1 }",
    );
    let error = error_of(&with_expect);
    assert!(
        error.contains("tiers.toml") && error.contains("expect"),
        "{error}"
    );
    let decision = floor.replace("linear_workflow", "conditional_approval");
    let error = error_of(&decision);
    assert!(
        error.contains("floor") && error.contains("routing_decision"),
        "{error}"
    );
}
