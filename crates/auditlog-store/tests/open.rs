//! What `open` does with URLs it cannot use: a clear, typed error that names the
//! store without its password, and no long hang.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use auditlog_store::StoreError;

async fn open_err(url: &str) -> StoreError {
    match auditlog_store::open(url).await {
        Ok(_) => panic!("{url} opened"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn an_unknown_scheme_is_unsupported() {
    let err = open_err("redis://user:secret@127.0.0.1/0").await;
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named_without_its_password() {
    // Port 1 on the loopback: nothing listens, the connection is refused at once, and
    // the error must say so now rather than after the pool's retries time out.
    for url in [
        "postgres://bob:secret@127.0.0.1:1/audit",
        "postgresql://bob:secret@127.0.0.1:1/audit",
        "mysql://bob:secret@127.0.0.1:1/audit",
        "mariadb://bob:secret@127.0.0.1:1/audit",
    ] {
        let started = Instant::now();
        let err = open_err(url).await;
        let message = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{url}: {err:?}");
        assert!(message.contains("bob:***@127.0.0.1:1/audit"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url} took {:?}",
            started.elapsed()
        );
    }
}
