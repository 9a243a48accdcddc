//! What the client commands (`export`, `query`, `emit`) share when they talk to a
//! running deployment: the reader's bearer token, the JSON:API filter parameters,
//! the API's error detail, and the times a user may type on the command line.

use anyhow::{Context, Result, bail};
use auditlog_auditor::filters::{
    ActionList, AnyText, EpochMillis, EventFilters, ObjectIdText, ObjectTypeText, SortOrder,
};
use clap::Args;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where to read events and as whom: `auditlog query` flattens this.
#[derive(Debug, Clone, Args)]
pub struct ReaderArgs {
    /// The primary API (or the auditor: it answers the same queries).
    #[arg(
        long,
        env = "AUDITLOG_API_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub api_url: String,
    /// Bearer token of the reader; what it may read is what is shown.
    #[arg(long, env = "AUDITLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// On a demo deployment: get a token for this user from /tokens/ID instead.
    #[arg(long, value_name = "ID")]
    pub as_user: Option<i64>,
}

impl ReaderArgs {
    /// The API's base URL without a trailing slash.
    pub fn base(&self) -> String {
        self.api_url.trim_end_matches('/').to_owned()
    }
}

/// The bearer token: `token` if given, else a demo token for `as_user` from the
/// primary API's `/tokens/ID` (which exists only with `--dev-tokens`).
pub async fn reader_token(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    as_user: Option<i64>,
) -> Result<String> {
    match (token, as_user) {
        (Some(token), _) => Ok(token.to_owned()),
        (None, Some(user)) => {
            let answer = client
                .get(format!("{base}/tokens/{user}"))
                .send()
                .await
                .with_context(|| format!("while asking {base} for a dev token"))?;
            if !answer.status().is_success() {
                bail!(
                    "{base}/tokens/{user} answered {}: demo tokens come from the primary API \
                     and only while it runs with --dev-tokens=true; give --token instead",
                    answer.status()
                );
            }
            Ok(answer.text().await?)
        }
        (None, None) => {
            bail!("give a token with --token (or AUDITLOG_TOKEN), or --as-user ID on a demo")
        }
    }
}

/// The event filters both `export` and `query` take (flattened into their
/// arguments), turned into the query API's parameters by [`Filters::params`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filters {
    /// Only events by this actor, TYPE:ID.
    #[arg(long, value_name = "TYPE:ID")]
    pub actor: Option<String>,
    /// Only events on this target, TYPE:ID.
    #[arg(long, value_name = "TYPE:ID")]
    pub target: Option<String>,
    /// Only these actions, comma-separated (viewed, created, changed, deleted).
    #[arg(long)]
    pub action: Option<String>,
    /// Only these event names, comma-separated.
    #[arg(long)]
    pub event_name: Option<String>,
    /// From this time on: ms since the Unix epoch, RFC 3339, a date, or a span back
    /// from now (90s, 15m, 2h, 7d).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Before this time, in the same forms as --since.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
}

impl Filters {
    /// The query parameters (`filter[actorType]=…`) selecting these events, in
    /// the order `sort` (`-timestamp` or `timestamp`) when given: the query API's
    /// own [`EventFilters`], so that the names are the ones it parses.
    pub fn params(&self, sort: Option<&str>) -> Result<Vec<(String, String)>> {
        let mut filters = EventFilters {
            action: self.action.clone().map(ActionList),
            event_name: self.event_name.clone().map(AnyText),
            since: self.since.map(|ms| EpochMillis(ms.to_string())),
            until: self.until.map(|ms| EpochMillis(ms.to_string())),
            sort: sort.map(|order| SortOrder(order.to_owned())),
            ..EventFilters::default()
        };
        if let Some(actor) = &self.actor {
            let (object_type, id) = object_ref("actor", actor)?;
            filters.actor_type = Some(ObjectTypeText(object_type.to_owned()));
            filters.actor_id = Some(ObjectIdText(id.to_owned()));
        }
        if let Some(target) = &self.target {
            let (object_type, id) = object_ref("target", target)?;
            filters.target_type = Some(ObjectTypeText(object_type.to_owned()));
            filters.target_id = Some(ObjectIdText(id.to_owned()));
        }
        // As pairs, in the struct's order, so that callers can add the list options.
        let text = serde_urlencoded::to_string(&filters)?;
        Ok(serde_urlencoded::from_str(&text)?)
    }
}

/// Splits the `TYPE:ID` given to `--{flag}` at its first colon.
pub fn object_ref<'t>(flag: &str, text: &'t str) -> Result<(&'t str, &'t str)> {
    text.split_once(':')
        .with_context(|| format!("--{flag} takes TYPE:ID, e.g. users:1, not `{text}`"))
}

/// The response, or an error carrying the API's JSON:API detail.
pub async fn checked(response: reqwest::Response) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let detail = body["errors"][0]["detail"].as_str().unwrap_or("no detail");
    bail!("the API answered {status}: {detail}")
}

/// A time typed on the command line, as milliseconds since the Unix epoch:
/// milliseconds themselves (`1764288000000`), RFC 3339 (`2026-11-28T10:00:00Z`,
/// `2026-11-28T10:00:00.5+01:00`), a UTC date (`2026-11-28`), or a span back from
/// now (`90s`, `15m`, `2h`, `7d`).
pub fn parse_time(text: &str) -> Result<i64, String> {
    parse_time_at(text, auditlog_event::now_ms())
}

fn parse_time_at(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let expected = "give milliseconds since the Unix epoch, an RFC 3339 time \
                    (2026-11-28T10:00:00Z), a date (2026-11-28) or a span back from now \
                    (90s, 15m, 2h, 7d)";
    if let Ok(ms) = text.parse::<i64>() {
        return if ms >= 0 {
            Ok(ms)
        } else {
            Err(format!("a time cannot be negative; {expected}"))
        };
    }
    if let Some(ago) = span_ms(text) {
        return Ok(now_ms.saturating_sub(ago).max(0));
    }
    let is_date = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
    let rfc3339 = if is_date {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let parsed = OffsetDateTime::parse(&rfc3339, &Rfc3339)
        .map_err(|_| format!("`{text}` is not a time I can read; {expected}"))?;
    let ms = parsed.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms)
        .ok()
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| format!("`{text}` is before 1970; {expected}"))
}

/// `90s`, `15m`, `2h`, `7d` as milliseconds.
pub fn span_ms(text: &str) -> Option<i64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let count: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    count.checked_mul(unit_ms)
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC with milliseconds
/// (`2026-11-28T10:00:00.123Z`), or the number itself if it is out of range.
pub fn format_time(ms: i64) -> String {
    let Ok(time) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_324_000_000; // 2025-11-28T10:00:00Z

    #[test]
    fn milliseconds_are_taken_as_they_are() {
        assert_eq!(parse_time_at("1700000000000", NOW), Ok(1_700_000_000_000));
    }

    #[test]
    fn rfc_3339_times_are_read_with_their_offset() {
        assert_eq!(
            parse_time_at("2023-11-14T22:13:20Z", NOW),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_at("2023-11-14T23:13:20.250+01:00", NOW),
            Ok(1_700_000_000_250)
        );
    }

    #[test]
    fn a_date_is_midnight_utc() {
        assert_eq!(parse_time_at("2023-11-14", NOW), Ok(1_699_920_000_000));
    }

    #[test]
    fn a_span_counts_back_from_now() {
        assert_eq!(parse_time_at("90s", NOW), Ok(NOW - 90_000));
        assert_eq!(parse_time_at("2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_time_at("7d", NOW), Ok(NOW - 7 * 86_400_000));
    }

    #[test]
    fn nonsense_and_negative_times_are_refused_with_the_accepted_forms() {
        for bad in ["yesterday", "-5", "12x", "2023-13-01"] {
            let err = parse_time_at(bad, NOW).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn times_are_shown_as_utc_with_milliseconds() {
        assert_eq!(format_time(1_700_000_000_250), "2023-11-14T22:13:20.250Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn filters_become_the_query_apis_parameters() {
        let filters = Filters {
            actor: Some("users:1".into()),
            action: Some("changed,deleted".into()),
            since: Some(5),
            ..Filters::default()
        };
        assert_eq!(
            filters.params(Some("timestamp")).unwrap(),
            [
                ("filter[actorType]", "users"),
                ("filter[actorId]", "1"),
                ("filter[action]", "changed,deleted"),
                ("filter[since]", "5"),
                ("sort", "timestamp"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn an_object_without_a_colon_is_refused_naming_the_flag() {
        let filters = Filters {
            target: Some("users".into()),
            ..Filters::default()
        };
        let err = filters.params(None).unwrap_err().to_string();
        assert!(err.contains("--target takes TYPE:ID"), "{err}");
    }
}
