//! The value parsers of the settings that are URLs, and how a secret is shown.

/// A clap value parser for database URLs: the scheme must name a backend.
/// Its messages never repeat the URL, which may hold a password.
pub fn database_url(value: &str) -> Result<String, String> {
    let allowed = "use sqlite://PATH, postgres://USER:PASSWORD@HOST/DB, postgresql://…, \
                   mysql://USER:PASSWORD@HOST/DB or mariadb://…";
    let Some(scheme) = scheme_of(value) else {
        return Err(format!("it does not start with a scheme; {allowed}"));
    };
    // The audit store's schemes; the primary API's database takes the same ones.
    if !auditlog_store::SCHEMES
        .iter()
        .any(|(name, _)| *name == scheme)
    {
        return Err(format!("`{scheme}` is not a supported database; {allowed}"));
    }
    if scheme != "sqlite" && !value.contains("://") {
        return Err(format!("`{scheme}:` must be followed by //HOST; {allowed}"));
    }
    Ok(value.to_owned())
}

/// A clap value parser for RabbitMQ URLs: only plain `amqp://` is built in.
/// A duration in seconds, more than zero and at most a day (e.g. `10` or `0.5`).
pub fn positive_seconds(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        _ => Err(format!(
            "`{value}` is not a number of seconds between 0 and 86400, e.g. 10 or 0.5"
        )),
    }
}

pub fn amqp_url(value: &str) -> Result<String, String> {
    let example =
        "amqp://USER:PASSWORD@HOST:5672/VHOST, e.g. amqp://guest:guest@127.0.0.1:5672/%2f";
    match scheme_of(value) {
        Some("amqp") if value.starts_with("amqp://") => Ok(value.to_owned()),
        Some("amqps") => Err(format!(
            "amqps:// (TLS) is not built in; use {example} (behind a TLS tunnel if needed)"
        )),
        Some(scheme) => Err(format!("`{scheme}` is not an AMQP URL; use {example}")),
        None => Err(format!("it does not start with amqp://; use {example}")),
    }
}

/// The scheme of a URL, if it has a well-formed one (so that it is safe to show).
fn scheme_of(value: &str) -> Option<&str> {
    let (scheme, _) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    well_formed.then_some(scheme)
}

/// A secret as it may be shown: a URL keeps everything but its password
/// ([`auditlog_event::redact_url`]); anything else is hidden whole.
pub fn redact(value: &str) -> String {
    if value.is_empty() || value.starts_with("sqlite:") || value.contains("://") {
        auditlog_event::redact_url(value)
    } else {
        "***".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn redact_hides_the_password_of_a_url_only() {
        assert_eq!(
            redact("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("mysql://root@db/x"), "mysql://root@db/x");
        assert_eq!(redact("sqlite://data/a@b.db"), "sqlite://data/a@b.db");
    }

    #[test]
    fn redact_hides_a_password_holding_raw_at_signs_and_slashes() {
        assert_eq!(
            redact("postgres://bob:p@ss/w@rd@db/x"),
            "postgres://bob:***@db/x"
        );
    }

    #[test]
    fn redact_hides_password_query_parameters() {
        assert_eq!(
            redact("postgres://db/x?user=bob&password=secret&sslmode=disable"),
            "postgres://db/x?user=bob&password=***&sslmode=disable"
        );
    }

    #[test]
    fn redact_hides_a_secret_that_is_not_a_url_whole() {
        assert_eq!(redact("eyJhbGciOiJFZERTQSJ9.e30.sig"), "***");
    }

    #[test]
    fn database_urls_are_accepted_by_scheme() {
        for url in [
            "sqlite://data/audit.db",
            "sqlite::memory:",
            "postgres://u:p@h/db",
            "postgresql://h/db",
            "mysql://root@h/db",
            "mariadb://root@h/db",
        ] {
            assert!(database_url(url).is_ok(), "{url}");
        }
        let refused = database_url("mongodb://u:hunter2@h/db").unwrap_err();
        assert!(refused.contains("`mongodb`"), "{refused}");
        assert!(refused.contains("postgres://"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!(database_url("postgres:db").is_err());
        assert!(database_url("u:pw@h/db").is_err());
    }

    #[test]
    fn amqp_urls_must_be_plain_amqp() {
        assert!(amqp_url("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(amqp_url("amqps://h").unwrap_err().contains("TLS"));
        assert!(amqp_url("http://h").unwrap_err().contains("`http`"));
    }
}
