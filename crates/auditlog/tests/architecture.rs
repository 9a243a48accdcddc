//! The crate graph as ARCHITECTURE.md draws it. `cargo metadata` lists what each
//! workspace crate depends on; the test fails when a crate depends on a workspace
//! crate its row of ARCHITECTURE.md's table does not allow, when the table and the
//! workspace list different crates, or when one of the invariants below (which no
//! edit of the table can lift) is broken: the producing side and the audited
//! application know nothing of the auditor.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// Arrows that must never exist, directly or through other workspace crates:
/// `(from, to)`.
const FORBIDDEN_PATHS: &[(&str, &str)] = &[
    // The audited application does not link the audit server.
    ("auditlog-primary-api", "auditlog-auditor"),
    ("auditlog-primary-api", "auditlog-store"),
    // Producers know nothing of the auditor, its store or HTTP.
    ("auditlog-emit", "auditlog-auditor"),
    ("auditlog-emit", "auditlog-store"),
    ("auditlog-emit", "auditlog-http"),
    ("auditlog-amqp", "auditlog-auditor"),
    ("auditlog-amqp", "auditlog-store"),
    ("auditlog-amqp", "auditlog-http"),
    ("auditlog-amqp", "auditlog-emit"),
    ("auditlog-transport", "auditlog-auditor"),
    ("auditlog-transport", "auditlog-store"),
    ("auditlog-transport", "auditlog-emit"),
    // The auditor consumes through the transport contract, not the producer SDK
    // or a broker's client.
    ("auditlog-auditor", "auditlog-emit"),
    ("auditlog-auditor", "auditlog-amqp"),
    // The store knows no HTTP, no transport and no authentication.
    ("auditlog-store", "auditlog-http"),
    ("auditlog-store", "auditlog-transport"),
    ("auditlog-store", "auditlog-auth"),
    // The wire contract depends on nothing of ours.
    ("auditlog-event", "auditlog-store"),
];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Each workspace crate and the workspace crates it depends on to build and run
/// (dev-dependencies, which only its own tests use, are left out).
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let root = workspace_root();
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].as_str() != Some("dev"))
                .map(|dep| dep["name"].as_str().unwrap().to_owned())
                .filter(|name| names.contains(name))
                .collect();
            (package["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// The rows of ARCHITECTURE.md's table of allowed dependencies: the crate, then
/// the workspace crates it may depend on.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let section = text
        .split("## Which crate may depend on which")
        .nth(1)
        .expect("ARCHITECTURE.md has the section `## Which crate may depend on which`");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut table = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `auditlog")) {
        let cells: Vec<&str> = line.split('|').collect();
        let names = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let from = names(cells[1]);
        assert_eq!(from.len(), 1, "one crate per row: {line}");
        table.insert(from[0].clone(), names(cells[2]).into_iter().collect());
    }
    assert!(!table.is_empty(), "the table has no rows");
    table
}

/// Every workspace crate `from` reaches through dependencies.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(name) = todo.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn every_crate_depends_only_on_what_architecture_md_allows() {
    let actual = dependencies();
    let allowed = allowed();

    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        allowed.keys().collect::<Vec<_>>(),
        "the workspace's crates (left) and ARCHITECTURE.md's table (right) differ"
    );
    for (name, deps) in &actual {
        let extra: Vec<&String> = deps.difference(&allowed[name]).collect();
        assert!(
            extra.is_empty(),
            "{name} depends on {extra:?}, which ARCHITECTURE.md does not allow it"
        );
    }
}

#[test]
fn producers_and_the_audited_application_know_nothing_of_the_auditor() {
    let actual = dependencies();
    // The table too: a row may not allow what the invariants forbid.
    let allowed = allowed();

    for graph in [&actual, &allowed] {
        for (from, to) in FORBIDDEN_PATHS {
            assert!(
                !reachable(graph, from).contains(*to),
                "{from} reaches {to}, directly or through another crate"
            );
        }
    }
}
