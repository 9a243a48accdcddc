//! The `auditlog` binary's end-to-end tests: each module drives the real binary
//! (spawned on free ports) against real databases, RabbitMQ and Chromium, and
//! is named for what it checks.
//!
//! They are one test binary, not one per file: each binary links the whole
//! dependency tree, so two dozen of them cost CI minutes of compiling, linking
//! and linting for nothing (nextest still runs every test in a process of its
//! own). `Cargo.toml` sets `autotests = false` for this; a file in `tests/` that
//! is not declared below would not be compiled at all, which the last test here
//! catches.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

mod architecture;
mod attacks;
mod bad_input;
mod bench;
mod browser;
mod cli;
mod config;
mod erasure;
mod faults;
mod forgery;
mod hardening;
mod history;
mod lifecycle;
mod observability;
mod openapi;
mod prove;
mod query_store;
mod request_id;
mod retention;
mod rights;
mod sinks;
mod tenants;
mod verify;
mod walkthrough;

/// Every `tests/*.rs` file and `tests/*/` directory is a module of this binary
/// (`autotests = false` would otherwise leave a new one silently uncompiled).
#[test]
fn every_file_in_tests_is_a_module_of_this_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = std::fs::read_to_string(tests.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        let name = if path.is_dir() {
            path.file_name()
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            path.file_stem()
        } else {
            continue;
        };
        let name = name.unwrap().to_string_lossy().into_owned();
        if name != "main" && !root.lines().any(|line| line == format!("mod {name};")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "declare these in tests/main.rs, or they are never compiled: {missing:?}"
    );
}
