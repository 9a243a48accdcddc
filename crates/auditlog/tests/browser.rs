//! The website in a real browser: headless Chromium, driven by playwright-core from
//! `tests/browser`. `website.mjs` adds a user, renames it and finds the change in
//! its history, then erases the user's personal data and finds it shown erased; `pages.mjs` drives the event explorer, an object's timeline, an
//! actor's page and the live view; `integrity.mjs` has the event page verify an
//! event against the signed log, then stands in for a lying server (playwright's
//! request interception alters the leaf, the checkpoint's signature or the key)
//! and expects each failure named; `sinks.mjs` lists three sinks on the Sinks page; `retention.mjs` sets a
//! retention and places and releases a legal hold on the Retention page
//! with their states and a failing one's error. Each saves screenshots in `target/screenshots/`.
//! Needs Node.js; installs what else it needs when it is missing: Debian's chromium
//! (`apt-get install chromium`, unless `CHROMIUM_PATH` names another) and
//! playwright-core (`npm ci`), once, under a lock the tests share.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Running, data_dir};

/// Runs `tests/browser/<script>` against a fresh `auditlog up` and returns its
/// standard output; fails the test if the script fails.
fn run_browser_script(script: &str) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    install_browser_tools(&repo);
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let output = Command::new("node")
        .arg(repo.join("tests/browser").join(script))
        .env("AUDITLOG_WEB_URL", &system.urls.web)
        .env("AUDITLOG_AUDITOR_URL", &system.urls.auditor)
        .output()
        .expect("node runs (install Node.js 20 or newer)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

/// Installs Chromium and playwright-core when they are missing. The tests run in
/// parallel: a file lock makes one install while the other waits, and then finds
/// them there.
fn install_browser_tools(repo: &Path) {
    let lock_path = repo.join("target/browser-tools.lock");
    std::fs::create_dir_all(repo.join("target")).unwrap();
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    match std::env::var("CHROMIUM_PATH") {
        Ok(path) => assert!(
            Path::new(&path).exists(),
            "CHROMIUM_PATH names {path}, which does not exist"
        ),
        Err(_) if Path::new(DEBIAN_CHROMIUM).exists() => {}
        Err(_) => install_debian_chromium(),
    }
    if !repo
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(repo.join("tests/browser"))
            .status()
            .expect("npm runs (install Node.js 20 or newer)");
        assert!(status.success(), "`npm ci` in tests/browser failed");
    }
    lock.unlock().unwrap();
}

/// Where Debian's chromium package puts the browser.
const DEBIAN_CHROMIUM: &str = "/usr/bin/chromium";

/// `apt-get install chromium`, updating the package lists first if the install
/// cannot find the package.
fn install_debian_chromium() {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let cannot = |why: String| -> ! {
        panic!(
            "Chromium is not installed and could not be installed ({why}): run \
             `apt-get update && apt-get install -y chromium` as root, or set CHROMIUM_PATH \
             to a Chromium or Chrome binary"
        )
    };
    match install() {
        Ok(status) if status.success() => {}
        Ok(_) => {
            let updated = Command::new("apt-get").args(["update", "-qq"]).status();
            if !updated.is_ok_and(|s| s.success()) {
                cannot("`apt-get update` failed".into());
            }
            if !install().is_ok_and(|s| s.success()) {
                cannot("`apt-get install chromium` failed".into());
            }
        }
        Err(err) => cannot(format!("apt-get could not be run: {err}")),
    }
    assert!(
        Path::new(DEBIAN_CHROMIUM).exists(),
        "apt-get installed chromium, but {DEBIAN_CHROMIUM} is not there"
    );
}

#[test]
fn the_website_adds_a_user_edits_it_and_shows_the_change_in_its_history() {
    run_browser_script("website.mjs");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(
        repo.join("target/screenshots/website-user-history.png")
            .exists()
    );
}

#[test]
fn the_sinks_page_shows_each_sinks_state_and_last_error() {
    run_browser_script("sinks.mjs");
}

#[test]
fn the_retention_page_sets_a_policy_and_places_and_releases_a_hold() {
    run_browser_script("retention.mjs");
}

#[test]
fn the_explorer_timeline_actor_and_live_pages_work_in_a_browser() {
    run_browser_script("pages.mjs");
}

#[test]
fn the_event_page_verifies_the_event_in_the_signed_log_and_names_each_tampering() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shots = [
        "verified",
        "pending",
        "proof-failed",
        "leaf-failed",
        "signature-failed",
        "key-changed",
    ]
    .map(|shot| repo.join(format!("target/screenshots/integrity-{shot}.png")));
    // An earlier run's screenshots must not pass for this run's.
    for shot in &shots {
        let _ = std::fs::remove_file(shot);
    }

    run_browser_script("integrity.mjs");

    for shot in &shots {
        assert!(shot.exists(), "{} was not saved", shot.display());
    }
}
