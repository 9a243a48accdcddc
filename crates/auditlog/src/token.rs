//! `auditlog token`: mints a token signed with the data directory's key, for an
//! operator or a script on the services' host, who holds that key anyway. With the
//! demo tokens off (`--dev-tokens=false`) it is the way to an operator's token for
//! `auditlog query`, `/api/producers` and the rest without an external issuer.
//!
//! It never creates a key: one it made up would be trusted by no service, so a
//! directory without a key is an error that says where the key is expected.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use auditlog_auth::{KeyPair, Principal, Role, TokenIssuer};
use clap::Args;

use crate::remote;

/// Longest `--ttl`. A token cannot be revoked short of replacing the signing key
/// (which invalidates every token and the services' own), so a long-lived one is a
/// standing risk; a script on the host can mint a fresh one whenever it needs.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The deployment's data directory, whose signing key (jwt-ed25519.pem) signs
    /// the token. It is only read: the services create the key on their first start.
    #[arg(long, env = "AUDITLOG_DATA_DIR", default_value = "auditlog-data")]
    data_dir: PathBuf,
    /// Whom the token names (its `sub`): a user id for admin and member tokens, a
    /// name for a service.
    #[arg(long, value_name = "ID")]
    subject: String,
    /// operator (the deployment's staff: every tenant), admin (reads every event
    /// of its tenant, manages its users), member (reads only the events they
    /// performed or that were done to them) or service (delivers events, reads
    /// nothing).
    #[arg(long, value_enum)]
    role: TokenRole,
    /// The tenant the principal belongs to; `*` for a service that delivers
    /// for every tenant.
    #[arg(long, default_value = auditlog_event::DEFAULT_TENANT)]
    tenant: String,
    /// How long the token is valid: 90s, 20m, 8h, at most 24h.
    #[arg(long, default_value = "20m", value_parser = ttl)]
    ttl: Duration,
}

/// The roles as an operator names them; `member` is the policy's ordinary user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TokenRole {
    Operator,
    Admin,
    #[value(alias = "user")]
    Member,
    Service,
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Role {
        match role {
            TokenRole::Operator => Role::Operator,
            TokenRole::Admin => Role::Admin,
            TokenRole::Member => Role::User,
            TokenRole::Service => Role::Service,
        }
    }
}

/// Prints the token alone on standard output, so that `TOKEN=$(auditlog token …)`
/// captures exactly it.
pub fn run(args: TokenArgs) -> Result<()> {
    let dir = &args.data_dir;
    let pair = KeyPair::load(dir)
        .with_context(|| format!("while reading the signing key in {}", dir.display()))?
        .with_context(|| {
            format!(
                "{} has no signing key ({}): the services create it on their first start; \
                 give --data-dir the directory they run with",
                dir.display(),
                KeyPair::path_in(dir).display()
            )
        })?;
    let principal = Principal::new(args.subject.clone(), args.role.into())
        .context("--subject must be 1 to 128 characters")?;
    let tenant = if args.tenant == auditlog_auth::ANY_TENANT {
        anyhow::ensure!(
            args.role == TokenRole::Service,
            "--tenant '*' (every tenant) is for services; an operator reads every tenant anyway"
        );
        args.tenant.clone()
    } else {
        auditlog_event::parse_tenant("--tenant", &args.tenant).map_err(anyhow::Error::msg)?
    };
    let principal = principal.in_tenant(tenant);
    let token = TokenIssuer::new(&pair)?.issue_for(&principal, args.ttl)?;
    println!("{token}");
    Ok(())
}

/// A `--ttl`: a span such as `90s`, `20m`, `8h`, from one second to [`MAX_TTL`].
fn ttl(text: &str) -> Result<Duration, String> {
    let expected = "give a span such as 90s, 20m or 8h, at most 24h";
    let ms = remote::span_ms(text.trim())
        .ok_or_else(|| format!("`{text}` is not a span; {expected}"))?;
    let ttl = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    if ttl < Duration::from_secs(1) {
        return Err(format!("a token must live at least 1s; {expected}"));
    }
    if ttl > MAX_TTL {
        return Err(format!(
            "`{text}` is too long: tokens cannot be revoked, so they live at most 24h; \
             mint a fresh one when it expires"
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_is_a_span_of_one_second_to_a_day() {
        assert_eq!(ttl("20m"), Ok(Duration::from_secs(20 * 60)));
        assert_eq!(ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(ttl("24h"), Ok(MAX_TTL));
    }

    #[test]
    fn a_ttl_that_is_not_a_span_or_out_of_range_is_refused_saying_why() {
        assert!(ttl("soon").unwrap_err().contains("not a span"));
        assert!(ttl("500ms").unwrap_err().contains("at least 1s"));
        assert!(ttl("0s").unwrap_err().contains("at least 1s"));
        assert!(ttl("2d").unwrap_err().contains("at most 24h"));
    }
}
