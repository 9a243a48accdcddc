//! `auditlog bench api`: drives the primary API (`GET /api/users/1`, one `viewed`
//! event per request) over HTTP in several configurations in one run — auditing
//! off, auditing on with the embedded transport, and with `--amqp-url` auditing on
//! over RabbitMQ with the broker up and with it gone — and reports throughput and
//! latency percentiles of each, and the ratio of audited to unaudited throughput.
//! Each configuration is a fresh `auditlog up` process on its own data directory.
//! Where events are stored during the run (embedded, broker up), it also reports
//! how long after the load stopped the last of them became queryable: an auditor
//! that yields to the primary API under load stores part of its work afterwards.
//! On Linux it also reports the CPU time per request of the API's threads, of the
//! in-process auditor's and of the load generator ([`crate::cpu`]).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cpu::CpuTime;
use crate::proxy::TcpProxy;
use crate::stats::{peak_rss_kib, percentiles};

/// What to run.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Measured time per configuration.
    pub duration: Duration,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// RabbitMQ (`host:port` is reached through a local proxy that can cut it).
    pub amqp_url: Option<String>,
    /// Only this configuration (`off`, `embedded`, `rabbitmq`, `rabbitmq-down`).
    pub only: Option<String>,
    /// Times every configuration runs, one round after the other.
    pub rounds: usize,
}

/// One configuration's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ApiScenario {
    pub name: String,
    /// 1 for the first round.
    pub round: usize,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_peak_rss_kib: u64,
    /// Milliseconds from the end of the load until every event it caused (one per
    /// successful request, warm-up included) was queryable; `None` where events
    /// are not stored during the run (`off`, broker gone), or not all were within
    /// [`BACKLOG_LIMIT`].
    pub all_stored_after_ms: Option<f64>,
    /// CPU time per request of the measured load, in µs, where Linux's `/proc`
    /// tells it (`None` elsewhere).
    pub cpu_us_per_request: Option<CpuPerRequest>,
}

/// Where a request's CPU time went, in µs per request of the measured load.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerRequest {
    /// `auditlog up`'s threads at its own priority (the primary API and its
    /// database) while the load ran.
    pub api: f64,
    /// Its threads that yield to them (the in-process auditor and the audit
    /// store's connections), from the start of the load until every event of the
    /// run was stored (or the wait for them gave up): the work an idle-priority
    /// auditor left for after the load counts too. It also holds the bench's own
    /// look-ups of the last event. RabbitMQ's own CPU, in its own process, is not
    /// counted anywhere.
    pub auditor: f64,
    /// The bench process, which generates the load, while the load ran.
    pub load_generator: f64,
}

/// Longest wait for the events of a run to be stored after its load stopped.
pub const BACKLOG_LIMIT: Duration = Duration::from_secs(120);

/// The whole run. Field names are stable across commits (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ApiReport {
    pub connections: usize,
    pub seconds_per_scenario: f64,
    pub scenarios: Vec<ApiScenario>,
    /// Audited (embedded) throughput over unaudited throughput: the median of the
    /// rounds' ratios.
    pub audited_to_unaudited: Option<f64>,
    /// That ratio in each round, in order.
    pub audited_to_unaudited_by_round: Vec<f64>,
}

pub async fn run(options: ApiOptions) -> Result<ApiReport> {
    let mut scenarios = Vec::new();
    let mut ratios = Vec::new();
    for round in 1..=options.rounds.max(1) {
        let measured = run_round(&options).await?;
        let throughput = |name: &str| {
            measured
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.requests_per_sec)
        };
        if let (Some(on), Some(off)) = (throughput("embedded"), throughput("off"))
            && off > 0.0
        {
            ratios.push(on / off);
        }
        scenarios.extend(measured.into_iter().map(|s| ApiScenario { round, ..s }));
    }
    Ok(ApiReport {
        connections: options.connections,
        seconds_per_scenario: options.duration.as_secs_f64(),
        scenarios,
        audited_to_unaudited: median(&ratios),
        audited_to_unaudited_by_round: ratios,
    })
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Every wanted configuration once, each a fresh `auditlog up`.
async fn run_round(options: &ApiOptions) -> Result<Vec<ApiScenario>> {
    let scratch = tempfile::tempdir()?;
    let mut scenarios = Vec::new();
    let wanted = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    if wanted("off") {
        scenarios.push(scenario("off", &["--audit", "off"], options, scratch.path(), None).await?);
    }
    if wanted("embedded") {
        scenarios.push(scenario("embedded", &[], options, scratch.path(), None).await?);
    }
    if let Some(url) = &options.amqp_url {
        let (scheme, rest) = url
            .split_once("://")
            .context("an AMQP URL looks like amqp://…")?;
        let (userinfo, hostpath) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
        let (hostport, vhost) = hostpath.split_once('/').unwrap_or((hostpath, "%2f"));
        let tag = uuid::Uuid::now_v7().simple().to_string();
        for (name, down) in [("rabbitmq", false), ("rabbitmq-down", true)] {
            if !wanted(name) {
                continue;
            }
            let proxy = TcpProxy::start(hostport).await?;
            let through = format!("{scheme}://{userinfo}@127.0.0.1:{}/{vhost}", proxy.port());
            // The scenario's own names, deleted afterwards.
            let own = auditlog_amqp::AmqpConfig {
                exchange: format!("api-stream-bench-{tag}-{name}"),
                queue: format!("audits-bench-{tag}-{name}"),
                dead_letter_queue: format!("audits-bench-{tag}-{name}.dead"),
                ..auditlog_amqp::AmqpConfig::new(url.clone())
            };
            let names = [
                ("--amqp-exchange", own.exchange.clone()),
                ("--amqp-queue", own.queue.clone()),
                ("--amqp-dead-letter-queue", own.dead_letter_queue.clone()),
            ];
            let mut args: Vec<String> = vec!["--amqp-url".into(), through];
            for (flag, value) in names {
                args.push(flag.into());
                args.push(value);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let proxy = down.then_some(&proxy);
            let measured = scenario(name, &args, options, scratch.path(), proxy).await;
            if let Err(err) = auditlog_amqp::delete_topology(&own).await {
                tracing::warn!(%err, "the run's RabbitMQ queues could not be deleted");
            }
            scenarios.push(measured?);
        }
    }
    Ok(scenarios)
}

/// A child `auditlog up` and its primary API's URL.
struct Server {
    child: Child,
    api: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_server(extra: &[&str], data_dir: &std::path::Path) -> Result<Server> {
    let exe = std::env::current_exe().context("while locating the auditlog binary")?;
    let mut child = Command::new(exe)
        .args([
            "up",
            "--api-addr",
            "127.0.0.1:0",
            "--auditor-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("AUDITLOG_DATA_DIR", data_dir)
        .env("AUDITLOG_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("while starting auditlog up")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next() {
        let line = line?;
        if line.contains("primary API")
            && let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://"))
        {
            // Keep reading what it prints later: a closed pipe would fail its writes.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(Server {
                api: url.to_owned(),
                child,
            });
        }
    }
    let _ = child.kill();
    bail!("auditlog up exited before printing its URLs")
}

async fn scenario(
    name: &str,
    extra: &[&str],
    options: &ApiOptions,
    scratch: &std::path::Path,
    cut: Option<&TcpProxy>,
) -> Result<ApiScenario> {
    let server = start_server(extra, &scratch.join(name))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.connections)
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .build()?;
    let token = client
        .get(format!("{}/tokens/1", server.api))
        .send()
        .await?
        .text()
        .await?;
    if let Some(proxy) = cut {
        proxy.set_down(true);
    }
    let url = format!("{}/api/users/1", server.api);
    // Warm up connections and caches, untimed.
    let (warm_up, _, _) = load(
        &client,
        &url,
        &token,
        options.connections,
        Duration::from_secs(1),
    )
    .await;
    let server_pid = server.child.id();
    let started = CpuReadings::take(server_pid);
    let (latencies, errors, elapsed) =
        load(&client, &url, &token, options.connections, options.duration).await;
    let loaded = CpuReadings::take(server_pid);
    let requests = latencies.len() as u64;
    let all_stored_after_ms = match (name, cut) {
        ("off", _) | (_, Some(_)) => None,
        _ => {
            let events = warm_up.len() as u64 + requests;
            all_stored_after(&client, &server.api, &token, events).await?
        }
    };
    // Only the auditor's side is read here: the load generator stopped with the load.
    let stored = crate::cpu::of_process(server_pid);
    let p = percentiles(latencies);
    Ok(ApiScenario {
        name: name.to_owned(),
        round: 1,
        requests,
        errors,
        requests_per_sec: requests as f64 / elapsed.as_secs_f64(),
        p50_ms: p.p50 as f64 / 1_000.0,
        p99_ms: p.p99 as f64 / 1_000.0,
        server_peak_rss_kib: peak_rss_kib(server.child.id()),
        all_stored_after_ms,
        cpu_us_per_request: cpu_per_request(&started, &loaded, stored, requests),
    })
}

/// CPU time of the server and of this process (the load generator) at one moment.
struct CpuReadings {
    server: Option<CpuTime>,
    bench: Option<CpuTime>,
}

impl CpuReadings {
    fn take(server_pid: u32) -> Self {
        CpuReadings {
            server: crate::cpu::of_process(server_pid),
            bench: crate::cpu::of_process(std::process::id()),
        }
    }
}

/// Per request: the API's and the load generator's CPU while the load ran, and
/// the auditor's from the start of the load until `stored` (the server's reading
/// once every event was stored).
fn cpu_per_request(
    started: &CpuReadings,
    loaded: &CpuReadings,
    stored: Option<CpuTime>,
    requests: u64,
) -> Option<CpuPerRequest> {
    if requests == 0 {
        return None;
    }
    let per_request = |ns: u64| ns as f64 / 1_000.0 / requests as f64;
    let start = started.server?;
    Some(CpuPerRequest {
        api: per_request(loaded.server?.since(&start).normal_ns),
        auditor: per_request(stored?.since(&start).yielding_ns),
        load_generator: per_request(loaded.bench?.since(&started.bench?).total_ns()),
    })
}

/// How long after the load the store held all `events` `viewed` events it caused
/// on user 1, in ms; `None` if they were not all there within [`BACKLOG_LIMIT`].
///
/// One more request, tagged with its own `X-Request-Id`, goes last: events travel
/// and are stored in the order they were emitted, so once its event is on the
/// first page every earlier one is stored too. Asking for a first page costs the
/// store little while it catches up (counting every event at each look would cost
/// it the more, the longer the run); the count is taken once, at the end.
async fn all_stored_after(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    events: u64,
) -> Result<Option<f64>> {
    let started = Instant::now();
    let marker = uuid::Uuid::now_v7().simple().to_string();
    let tagged = client
        .get(format!("{api}/api/users/1"))
        .header("X-Request-Id", &marker);
    send(
        tagged,
        token,
        "while sending the run's last, tagged request",
    )
    .await?;
    let events_on_user = format!("{api}/events/on/users/1?filter[action]=viewed");
    let newest = format!("{events_on_user}&page[size]=20");
    let stored_after = loop {
        let page = send(
            client.get(&newest),
            token,
            "while looking for the run's last event",
        )
        .await?
        .text()
        .await?;
        if page.contains(&marker) {
            break started.elapsed();
        }
        if started.elapsed() > BACKLOG_LIMIT {
            tracing::warn!("the run's last event was not stored in time");
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let count = client.get(format!("{events_on_user}&count=true&page[size]=1"));
    let counted: serde_json::Value = send(count, token, "while counting the run's stored events")
        .await?
        .json()
        .await?;
    let stored = counted["meta"]["total"]
        .as_u64()
        .context("the events page has no meta.total")?;
    // The tagged request's own event is one more.
    if stored < events + 1 {
        tracing::warn!(
            stored,
            events,
            "events of the run are missing from the store"
        );
        return Ok(None);
    }
    Ok(Some(stored_after.as_secs_f64() * 1_000.0))
}

/// Sends `request` as `token`'s holder; an error status is an error saying what
/// was being done.
async fn send(
    request: reqwest::RequestBuilder,
    token: &str,
    doing: &'static str,
) -> Result<reqwest::Response> {
    request
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()
        .context(doing)
}

/// `connections` loops of GET until `duration` is up: latencies (µs) of the
/// successful requests, the number of failed ones, and the time taken.
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    connections: usize,
    duration: Duration,
) -> (Vec<u64>, u64, Duration) {
    let running = Arc::new(AtomicBool::new(true));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
            let (running, errors) = (running.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let ok = match client.get(&url).bearer_auth(&token).send().await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            ok && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    running.store(false, Ordering::Relaxed);
    let mut all = Vec::new();
    for worker in workers {
        if let Ok(latencies) = worker.await {
            all.extend(latencies);
        }
    }
    (all, errors.load(Ordering::Relaxed), started.elapsed())
}

impl ApiReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "primary API, GET /api/users/1, {} connections, {:.0} s each\n{:<6} {:<16} {:>12} {:>9} {:>9} {:>8} {:>10} {:>16} {:>24}\n",
            self.connections,
            self.seconds_per_scenario,
            "round",
            "auditing",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "RSS MiB",
            "all stored +s",
            "CPU µs/req api/auditor"
        );
        for s in &self.scenarios {
            out.push_str(&format!(
                "{:<6} {:<16} {:>12.0} {:>9.2} {:>9.2} {:>8} {:>10.1} {:>16} {:>24}\n",
                s.round,
                s.name,
                s.requests_per_sec,
                s.p50_ms,
                s.p99_ms,
                s.errors,
                s.server_peak_rss_kib as f64 / 1024.0,
                s.all_stored_after_ms
                    .map_or("-".to_owned(), |ms| format!("{:.2}", ms / 1_000.0)),
                s.cpu_us_per_request.map_or("-".to_owned(), |cpu| format!(
                    "{:.1} / {:.1}",
                    cpu.api, cpu.auditor
                ))
            ));
        }
        if let Some(ratio) = self.audited_to_unaudited {
            let rounds: Vec<String> = self
                .audited_to_unaudited_by_round
                .iter()
                .map(|r| format!("{:.1}%", r * 100.0))
                .collect();
            out.push_str(&format!(
                "audited (embedded) / unaudited throughput: {:.1}%{}\n",
                ratio * 100.0,
                if rounds.len() > 1 {
                    format!(" (median of rounds: {})", rounds.join(", "))
                } else {
                    String::new()
                }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[0.9, 0.7, 0.8]), Some(0.8));
        assert_eq!(median(&[0.9, 0.7, 0.8, 0.6]), Some(0.75));
    }
}
