//! The one rule for showing a connection URL in logs and errors: everything but
//! its password. It lives here, with no I/O, because every crate that opens a
//! connection (store, broker, the primary API's database, the command line)
//! depends on this one.

/// The URL with any password hidden: the one in the user info and the values of
/// `password`-like query parameters become `***`.
///
/// The user info ends at the *last* `@` before the path or query, as URL parsers
/// read it, so a password holding a raw `@` or `/` does not leak either.
///
/// ```
/// use auditlog_event::redact_url;
/// assert_eq!(redact_url("postgres://bob:s3cret@db:5432/audit"), "postgres://bob:***@db:5432/audit");
/// assert_eq!(redact_url("amqp://guest:p@ss/w@rd@mq/%2f"), "amqp://guest:***@mq/%2f");
/// assert_eq!(redact_url("mysql://db/x?password=hunter2"), "mysql://db/x?password=***");
/// ```
pub fn redact_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        // A file name: no credentials to hide.
        return url.to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (head, tail) = rest.split_at(end);
    let head = match head.rfind('@') {
        Some(at) => match head[..at].split_once(':') {
            Some((user, _password)) => format!("{user}:***{}", &head[at..]),
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    format!("{scheme}://{head}{}", redact_query(tail))
}

/// `?a=1&password=x#f` with the values of password-like parameters hidden.
fn redact_query(tail: &str) -> String {
    let Some(query) = tail.strip_prefix('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, format!("#{fragment}")),
        None => (query, String::new()),
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                format!("{name}=***")
            }
            _ => parameter.to_owned(),
        })
        .collect();
    format!("?{}{fragment}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_is_hidden() {
        assert_eq!(
            redact_url("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/x"),
            "mysql://root@localhost/x"
        );
        assert_eq!(redact_url("sqlite://data/a@b.db"), "sqlite://data/a@b.db");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn a_password_with_raw_at_signs_and_slashes_does_not_leak() {
        let shown = redact_url("postgres://bob:p@s/s@db:5432/x?sslmode=disable");
        assert_eq!(shown, "postgres://bob:***@db:5432/x?sslmode=disable");
    }

    #[test]
    fn password_query_parameters_are_hidden() {
        assert_eq!(
            redact_url("mysql://db/x?user=a&Password=b#frag"),
            "mysql://db/x?user=a&Password=***#frag"
        );
    }
}
