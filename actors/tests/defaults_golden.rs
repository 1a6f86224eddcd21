//! Golden tests of the API server's defaulting: realistic manifests under
//! `tests/golden/defaults/` default to the checked-in expected objects. They live here,
//! not in `src/`, because they read files: the crate's own code stays free of I/O.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use keel_actors::apiserver::defaults::{
    apply_defaults, default_job_selector, default_namespace_finalizers,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The golden cases under `tests/golden/defaults/`: `<name>.input.json` goes in,
/// `<name>.expected.json` must come out.
const GOLDEN_CASES: [&str; 10] = [
    "deployment",
    "service-clusterip",
    "service-nodeport",
    "service-headless",
    "job",
    "cronjob",
    "pod",
    "statefulset",
    "daemonset",
    "namespace",
];

fn golden_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/defaults")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
}

/// What the API server does to a created object: defaulting, then the create-only
/// steps that need a uid (the input carries the uid it would have assigned).
fn default_as_on_create(mut object: Value) -> Value {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    apply_defaults(&kind, &mut object);
    if kind == "Job" {
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        default_job_selector(&mut object, &uid);
    }
    if kind == "Namespace" {
        default_namespace_finalizers(&mut object);
    }
    object
}

#[test]
fn golden_manifests_default_like_kubernetes() {
    // Proves each realistic manifest defaults to the checked-in expected object;
    // KEEL_UPDATE_GOLDEN=1 rewrites the expected files instead.
    let update = std::env::var("KEEL_UPDATE_GOLDEN").is_ok_and(|value| value == "1");
    let directory = golden_directory();
    let mut failures = Vec::new();
    for name in GOLDEN_CASES {
        let input = read_json(&directory.join(format!("{name}.input.json")));
        let actual = default_as_on_create(input);
        let expected_path = directory.join(format!("{name}.expected.json"));
        let actual_text = serde_json::to_string_pretty(&actual).expect("a Value serializes");
        if update {
            std::fs::write(&expected_path, format!("{actual_text}\n"))
                .unwrap_or_else(|error| panic!("writing {}: {error}", expected_path.display()));
            continue;
        }
        let expected = read_json(&expected_path);
        if actual != expected {
            let expected_text =
                serde_json::to_string_pretty(&expected).expect("a Value serializes");
            failures.push(format!(
                "{name}: expected\n{expected_text}\nactual\n{actual_text}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (KEEL_UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.join("\n")
    );
}

#[test]
fn golden_outputs_are_fixed_points() {
    // Proves defaulting is idempotent: an already defaulted object does not change,
    // which matters because the API server defaults again on every update.
    for name in GOLDEN_CASES {
        let expected = read_json(&golden_directory().join(format!("{name}.expected.json")));
        let again = default_as_on_create(expected.clone());
        assert_eq!(again, expected, "{name} changed when defaulted twice");
    }
}
