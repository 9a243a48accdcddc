//! The website in a real browser: headless Chromium, driven by playwright-core from
//! `tests/browser`. `website.mjs` adds a user, renames it and finds the change in
//! its history; `pages.mjs` drives the event explorer, an object's timeline, an
//! actor's page and the live view. Each saves screenshots in `target/screenshots/`.
//! Needs Node.js and Debian's chromium; installs playwright-core with `npm ci` when
//! it is missing.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Running, data_dir};

/// Runs `tests/browser/<script>` against a fresh `auditlog up` and returns its
/// standard output; fails the test if the script fails.
fn run_browser_script(script: &str) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM_PATH)"
    );
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
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let output = Command::new("node")
        .arg(repo.join("tests/browser").join(script))
        .env("AUDITLOG_WEB_URL", &system.urls.web)
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
fn the_explorer_timeline_actor_and_live_pages_work_in_a_browser() {
    run_browser_script("pages.mjs");
}
