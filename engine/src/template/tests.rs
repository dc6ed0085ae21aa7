//! Tests of loading, validation and ordering, against the scenario templates
//! and the bad-template fixtures.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::*;

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/templates");
const BAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/testdata/bad_templates"
);

fn scenario(file: &str) -> TaskTemplate {
    let path = Path::new(TEMPLATES).join(file);
    TaskTemplate::load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn names<'a>(steps: &[&'a StepTemplate]) -> Vec<&'a str> {
    steps.iter().map(|s| s.name.as_str()).collect()
}

fn bad(file: &str) -> String {
    let err = TaskTemplate::load_file(&Path::new(BAD).join(file))
        .expect_err("bad fixture must be refused");
    let message = err.to_string();
    assert!(
        message.contains(file),
        "message must name the file: {message}"
    );
    message
}

fn assert_mentions(message: &str, words: &[&str]) {
    for w in words {
        assert!(message.contains(w), "expected {w:?} in: {message}");
    }
}

/// A one-step template with `steps` replacing the step list.
fn yaml_with_steps(steps: &str) -> String {
    format!("name: t\nnamespace_name: ns\nversion: \"1.0.0\"\nsteps:\n{steps}")
}

#[test]
fn scenario_templates_load_with_expected_shape() {
    let cases = [
        (
            "linear.yaml",
            "linear",
            "linear_workflow",
            4,
            "linear_step_1",
        ),
        (
            "diamond.yaml",
            "diamond",
            "diamond_workflow",
            4,
            "diamond_start",
        ),
        (
            "complex_dag.yaml",
            "complex_dag",
            "complex_dag_workflow",
            7,
            "dag_init",
        ),
        (
            "hierarchical_tree.yaml",
            "tree",
            "hierarchical_tree_workflow",
            8,
            "tree_root",
        ),
        (
            "conditional.yaml",
            "conditional",
            "conditional_approval",
            7,
            "validate_request",
        ),
        ("chain.yaml", "chain", "chain_workflow", 16, "chain_step_01"),
        (
            "fanout.yaml",
            "fanout",
            "fanout_workflow",
            66,
            "fanout_root",
        ),
    ];
    for (file, namespace, name, count, root) in cases {
        let t = scenario(file);
        assert_eq!(t.namespace_name, namespace, "{file}");
        assert_eq!(t.name, name, "{file}");
        assert_eq!(t.steps.len(), count, "{file}");
        assert_eq!(names(&t.root_steps()), [root], "{file}");
        let order = t.topological_order();
        assert_eq!(order.len(), count, "{file}: every step ordered");
        assert_eq!(order[0].name, root, "{file}");
        // Every step comes after all its dependencies.
        let pos: HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        for s in &t.steps {
            for d in &s.dependencies {
                assert!(
                    pos[d.as_str()] < pos[s.name.as_str()],
                    "{file}: {d} before {}",
                    s.name
                );
            }
        }
    }
    let all = load_dir(Path::new(TEMPLATES)).unwrap();
    assert_eq!(all.len(), 9);
}

#[test]
fn the_critical_path_is_the_longest_chain_of_steps() {
    let path = |file: &str| {
        let t = scenario(file);
        (t.steps.len(), t.critical_path_len())
    };
    assert_eq!(path("linear.yaml"), (4, 4));
    assert_eq!(path("diamond.yaml"), (4, 3));
}

#[test]
fn scenario_orders_and_callables() {
    let linear = scenario("linear.yaml");
    assert_eq!(
        names(&linear.topological_order()),
        [
            "linear_step_1",
            "linear_step_2",
            "linear_step_3",
            "linear_step_4"
        ]
    );
    assert_eq!(linear.callables(), BTreeSet::from(["linear.square"]));

    let dag = scenario("complex_dag.yaml");
    assert_eq!(
        names(&dag.topological_order()),
        [
            "dag_init",
            "dag_process_left",
            "dag_process_right",
            "dag_validate",
            "dag_transform",
            "dag_analyze",
            "dag_finalize"
        ]
    );

    let cond = scenario("conditional.yaml");
    let decision = cond.step("routing_decision").unwrap();
    assert_eq!(decision.step_type, StepType::Decision);
    assert_eq!(
        names(&cond.dependents("routing_decision")),
        ["auto_approve", "manager_approval", "finance_review"]
    );
    assert_eq!(decision.handler.initialization["small_max"], 1000);

    let linear_key = linear.key();
    assert_eq!(linear_key.to_string(), "linear/linear_workflow@1.0.0");
}

#[test]
fn cycle_fixture_names_the_cycle_in_order() {
    let m = bad("cycle.yaml");
    assert_mentions(&m, &["cycle_a -> cycle_b -> cycle_c -> cycle_a"]);
}

#[test]
fn unknown_dependency_fixture_names_step_and_dependency() {
    let m = bad("unknown_dependency.yaml");
    assert_mentions(&m, &["'step_2'", "'step_zero'"]);
}

#[test]
fn duplicate_step_fixture_names_the_step() {
    let m = bad("duplicate_step.yaml");
    assert_mentions(&m, &["'fetch_data'", "duplicate"]);
}

#[test]
fn missing_handler_fixture_names_each_step() {
    let m = bad("missing_handler.yaml");
    assert_mentions(
        &m,
        &["'no_handler'", "'empty_callable'", "handler.callable"],
    );
    assert!(!m.contains("'has_handler'"), "{m}");
}

#[test]
fn unknown_field_fixture_names_the_field() {
    let m = bad("unknown_field.yaml");
    assert_mentions(&m, &["dependancies", "line"]);
}

#[test]
fn not_yaml_fixture_is_a_parse_error_with_position() {
    let err = TaskTemplate::load_file(&Path::new(BAD).join("not_yaml.yaml")).unwrap_err();
    assert!(matches!(err, TemplateError::Parse { .. }), "{err}");
    assert_mentions(&err.to_string(), &["not_yaml.yaml", "line"]);
}

#[test]
fn load_dir_of_bad_fixtures_fails() {
    assert!(load_dir(Path::new(BAD)).is_err());
}

#[test]
fn missing_file_names_the_path() {
    let err = TaskTemplate::load_file(Path::new("/nonexistent/x.yaml")).unwrap_err();
    assert!(matches!(err, TemplateError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/x.yaml"));
}

#[test]
fn all_problems_are_reported() {
    let text = yaml_with_steps(
        "  - name: a\n    handler: {callable: x.y}\n    dependencies: [zz]\n  - name: b\n    handler: {callable: ''}\n    retry: {max_attempts: 0}\n",
    );
    let err = TaskTemplate::from_yaml_str(&text, "two.yaml").unwrap_err();
    let TemplateError::Invalid { file, problems } = &err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(file, "two.yaml");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_mentions(&err.to_string(), &["'a'", "'zz'", "'b'", "max_attempts"]);
}

#[test]
fn header_problems() {
    let text = "name: Bad-Name\nnamespace_name: a_namespace_that_is_far_too_long_for_q\nversion: \"1.0\"\nsteps: []\n";
    let err = TaskTemplate::from_yaml_str(text, "h.yaml").unwrap_err();
    let TemplateError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert_mentions(
        &err.to_string(),
        &["Bad-Name", "namespace_name", "'1.0'", "steps"],
    );

    let err = TaskTemplate::from_yaml_str("description: nothing else\n", "m.yaml").unwrap_err();
    assert_mentions(
        &err.to_string(),
        &["name", "namespace_name", "version", "steps"],
    );
}

#[test]
fn defaults_apply() {
    let t = TaskTemplate::from_yaml_str(
        &yaml_with_steps("  - name: only\n    handler:\n      callable: x.y\n"),
        "d.yaml",
    )
    .unwrap();
    let s = &t.steps[0];
    assert_eq!(s.step_type, StepType::Standard);
    assert_eq!(s.retry, RetryPolicy::default());
    assert_eq!(s.timeout_seconds, 30);
    assert_eq!(s.handler.initialization, serde_json::json!({}));
    assert!(s.dependencies.is_empty());
    // Round trip through serialization.
    let text = serde_yaml_ng::to_string(&t).unwrap();
    assert_eq!(TaskTemplate::from_yaml_str(&text, "rt").unwrap(), t);
}

#[test]
fn step_level_checks() {
    let text = yaml_with_steps(concat!(
        "  - name: a\n    handler: {callable: x.y}\n    dependencies: [a]\n",
        "  - name: pick\n    type: decision\n    handler: {callable: x.y}\n",
        "  - name: batch\n    handler: {callable: x.y, initialization: [1]}\n",
        "    retry: {backoff_base_ms: 500, max_backoff_ms: 100}\n    timeout_seconds: 0\n",
    ));
    let err = TaskTemplate::from_yaml_str(&text, "s.yaml").unwrap_err();
    let TemplateError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 5, "{problems:?}");
    let m = err.to_string();
    assert_mentions(
        &m,
        &[
            "'a': depends on itself",
            "'pick': decision",
            "initialization",
            "max_backoff_ms",
            "timeout_seconds",
        ],
    );
    // A self-dependency is not also reported as a cycle.
    assert!(!m.contains("cycle"), "{m}");
}

#[test]
fn cycles_are_reported_once_each() {
    let text = yaml_with_steps(concat!(
        "  - {name: r, handler: {callable: x}}\n",
        "  - {name: a, handler: {callable: x}, dependencies: [r, b]}\n",
        "  - {name: b, handler: {callable: x}, dependencies: [a]}\n",
        "  - {name: c, handler: {callable: x}, dependencies: [b, d]}\n",
        "  - {name: d, handler: {callable: x}, dependencies: [c]}\n",
        "  - {name: e, handler: {callable: x}, dependencies: [r]}\n",
    ));
    let t: TaskTemplate = serde_yaml_ng::from_str(&text).unwrap();
    let err = t.validate("c.yaml").unwrap_err();
    let TemplateError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("a -> b -> a"), "{problems:?}");
    assert!(problems[1].contains("c -> d -> c"), "{problems:?}");
    // Steps on or behind a cycle are left out of the order.
    assert_eq!(names(&t.topological_order()), ["r", "e"]);
}

#[test]
fn topological_ties_follow_declaration_order() {
    let text = yaml_with_steps(concat!(
        "  - {name: z, handler: {callable: x}, dependencies: [y]}\n",
        "  - {name: y, handler: {callable: x}}\n",
        "  - {name: w, handler: {callable: x}}\n",
        "  - {name: v, handler: {callable: x}, dependencies: [w]}\n",
    ));
    let t = TaskTemplate::from_yaml_str(&text, "o.yaml").unwrap();
    assert_eq!(names(&t.topological_order()), ["y", "z", "w", "v"]);
    assert_eq!(names(&t.root_steps()), ["y", "w"]);
}

#[test]
fn load_dir_refuses_duplicate_keys_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(TEMPLATES).join("linear.yaml")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), &text).unwrap();
    std::fs::write(dir.path().join("b.yml"), &text).unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not a template").unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TemplateError::Duplicate { .. }), "{err}");
    assert_mentions(
        &err.to_string(),
        &["a.yaml", "b.yml", "linear/linear_workflow@1.0.0"],
    );

    std::fs::remove_file(dir.path().join("b.yml")).unwrap();
    assert_eq!(load_dir(dir.path()).unwrap().len(), 1);
}

#[test]
fn delay_ms_by_kind() {
    let policy = |backoff| RetryPolicy {
        retryable: true,
        max_attempts: 5,
        backoff,
        backoff_base_ms: 100,
        max_backoff_ms: 1000,
    };
    let exp = policy(BackoffKind::Exponential);
    let delays: Vec<u64> = (1..=6).map(|a| exp.delay_ms(a)).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(exp.delay_ms(0), 100);
    assert_eq!(exp.delay_ms(u32::MAX), 1000);

    let lin = policy(BackoffKind::Linear);
    let delays: Vec<u64> = (1..=4).map(|a| lin.delay_ms(a)).collect();
    assert_eq!(delays, [100, 200, 300, 400]);
    assert_eq!(lin.delay_ms(50), 1000);

    let fixed = policy(BackoffKind::Fixed);
    assert_eq!(fixed.delay_ms(1), 100);
    assert_eq!(fixed.delay_ms(9), 100);

    let huge = RetryPolicy {
        backoff_base_ms: u64::MAX / 2,
        max_backoff_ms: u64::MAX,
        ..exp
    };
    assert_eq!(huge.delay_ms(3), u64::MAX);
    assert_eq!(huge.delay_ms(200), u64::MAX);
}

#[test]
fn unknown_enum_values_are_parse_errors() {
    let text = yaml_with_steps("  - name: a\n    type: parallel\n    handler: {callable: x}\n");
    let err = TaskTemplate::from_yaml_str(&text, "e.yaml").unwrap_err();
    assert!(matches!(err, TemplateError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("parallel"), "{err}");
}
