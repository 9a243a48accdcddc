//! The website in a real browser: headless Chromium (driven by playwright-core from
//! `tests/browser`) adds a user, renames it and finds the change in its history.
//! Needs Node.js and Debian's chromium; installs playwright-core with `npm ci` when
//! it is missing.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Running, data_dir};

#[test]
fn the_website_adds_a_user_edits_it_and_shows_the_change_in_its_history() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = repo.join("tests/browser/website.mjs");
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (and `apt-get install chromium`)"
    );
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let output = Command::new("node")
        .arg(&script)
        .env("AUDITLOG_WEB_URL", &system.urls.web)
        .output()
        .expect("node runs (install Node.js 20 or newer)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        repo.join("target/screenshots/website-user-history.png")
            .exists()
    );
}
