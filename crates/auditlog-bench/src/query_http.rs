//! `auditlog bench query --http`: the shapes of `bench query`, asked over HTTP
//! of the auditor itself and through the primary API's proxy, at several numbers
//! of concurrent clients, on the store the run just loaded.
//!
//! The services are the real binary (`auditlog auditor` and `auditlog api`, each
//! a process of its own, on the run's data directory and store), so the figures
//! are what a client gets: token check, rights check, query, serialisation, the
//! read's `audit.read` record, and for the proxy one more hop. Each client is one
//! keep-alive HTTP/1.1 connection sending its next request when the last answer
//! is read (a closed loop, as wrk does). The clients run in this process, on the
//! same cores as the services: their CPU time per request is reported beside the
//! services', so that what limits a figure can be read off it.
//!
//! Before the services start, the same queries are asked of the store alone, by
//! as many tasks in this process calling `AuditStore::query` (cells `via`
//! `store`): no HTTP, no token, no `audit.read` record, so nothing is written
//! between reads. That is the store's own ceiling for the shape on this machine,
//! and the HTTP cells beside it show what serving and recording a read costs.
//!
//! Every answered read must have its `audit.read` event: once the services
//! stopped, the run counts those events in the store and compares them with the
//! reads answered (warm-ups included). Fewer events than answers fails the run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditlog_store::{AuditStore, EventQuery};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::cpu::CpuTime;
use crate::stats::percentiles;

/// What the HTTP part of a run does.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Numbers of concurrent clients, each measured in turn.
    pub clients: Vec<usize>,
    /// Measured time per cell (service × shape × clients).
    pub duration: Duration,
    /// The `auditlog` binary to run the services with; this one by default. An
    /// older build measures that build's services with this run's load.
    pub server_binary: Option<PathBuf>,
}

/// One cell: one service, one shape, one number of clients.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCell {
    /// `auditor` (its own port), `proxy` (the primary API's proxy to it) or
    /// `store` (the store alone, in this process: its clients are tasks calling
    /// `AuditStore::query`).
    pub via: String,
    pub shape: String,
    pub clients: usize,
    /// Answered reads (200, whole body read) in the measured time.
    pub requests: u64,
    /// Other answers and failed connections.
    pub errors: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU time per answered read, in µs, of each process while the cell ran:
    /// the auditor, the primary API (only the proxy uses it) and this process,
    /// the clients (for `store` cells, the store too; the services are not
    /// running then and count 0). `None` where Linux's `/proc` is not there.
    pub cpu_us_per_request: Option<HttpCpu>,
}

/// CPU time per answered read, by process, in µs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HttpCpu {
    pub auditor: f64,
    pub api: f64,
    pub clients: f64,
}

/// The HTTP part of a run. Field names are stable across commits (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    /// Events in the store when the HTTP part started (each read adds one).
    pub events_at_start: u64,
    pub seconds_per_cell: f64,
    pub cells: Vec<HttpCell>,
    /// Reads answered 200 during the whole HTTP part, warm-ups included.
    pub answered_reads: u64,
    /// `audit.read` events stored by the services during it.
    pub recorded_reads: u64,
}

/// Untimed requests per cell before it is measured, per client.
const WARM_UP: Duration = Duration::from_millis(300);
/// Paths made per shape; the clients go round them.
pub(crate) const PATHS_PER_SHAPE: usize = 200;

/// The queries of one shape, and the request path each is asked by over HTTP.
pub(crate) struct ShapePaths {
    pub(crate) name: &'static str,
    pub(crate) queries: Vec<EventQuery>,
    pub(crate) paths: Vec<String>,
}

/// The path and query string `query` is asked as over HTTP: by actor or on
/// target, in pages of its size, with its time range and cursor.
pub(crate) fn path_of(query: &EventQuery) -> Result<String> {
    let mut path = match (&query.actor, &query.target) {
        (Some(actor), None) => format!("/events/by/{}/{}", actor.object_type.as_str(), actor.id),
        (None, Some(target)) => format!("/events/on/{}/{}", target.object_type.as_str(), target.id),
        _ => bail!("an HTTP shape is by one actor or on one target"),
    };
    // Brackets percent-encoded, as a browser sends them.
    path.push_str(&format!("?page%5Bsize%5D={}", query.page_size));
    if let Some(since) = query.since {
        path.push_str(&format!("&filter%5Bsince%5D={since}"));
    }
    if let Some(until) = query.until {
        path.push_str(&format!("&filter%5Buntil%5D={until}"));
    }
    if let Some(cursor) = &query.after {
        path.push_str(&format!("&page%5Bafter%5D={}", cursor.encode()));
    }
    Ok(path)
}

/// Runs the cells of the store alone on `store`, then every cell against services
/// started on `data_dir` and `store_url`; then stops them and checks that every
/// read they answered was recorded in `store`.
pub(crate) async fn run(
    options: &HttpOptions,
    store: &Arc<dyn AuditStore>,
    data_dir: &Path,
    store_url: &str,
    shapes: &[ShapePaths],
    progress: bool,
) -> Result<HttpReport> {
    let events_at_start = store.count(&EventQuery::default()).await?;
    let mut cells = Vec::new();
    for shape in shapes {
        for &clients in &options.clients {
            if progress {
                eprintln!("  the store alone, {}, {clients} clients", shape.name);
            }
            let queries = Arc::new(shape.queries.clone());
            let (cell, _) = measure(shape.name, clients, options.duration, None, |n, flags| {
                store_loop(store.clone(), queries.clone(), n, flags)
            })
            .await;
            cells.push(HttpCell {
                via: "store".to_owned(),
                ..cell
            });
        }
    }
    let store = &**store;
    let recorded_before = count_reads(store).await?;
    let binary = match &options.server_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("while locating the auditlog binary")?,
    };
    let auditor = Service::start(
        &binary,
        &[
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--store-url",
            store_url,
        ],
        data_dir,
        "auditor",
    )?;
    let api = Service::start(
        &binary,
        &[
            "api",
            "--api-addr",
            "127.0.0.1:0",
            "--auditor-url",
            &auditor.url,
        ],
        data_dir,
        "primary API",
    )?;
    let token = reqwest::get(format!("{}/tokens/1", api.url))
        .await?
        .error_for_status()
        .context("while getting the admin's token from the primary API")?
        .text()
        .await?;
    let bearer = format!("Bearer {token}");
    let mut answered = 0;
    for (via, service) in [("auditor", &auditor), ("proxy", &api)] {
        for shape in shapes {
            for &clients in &options.clients {
                if progress {
                    eprintln!("  HTTP: {via}, {}, {clients} clients", shape.name);
                }
                let paths = Arc::new(shape.paths.clone());
                let (cell, answered_in_cell) = measure(
                    shape.name,
                    clients,
                    options.duration,
                    Some([auditor.pid(), api.pid()]),
                    |n, flags| client_loop(service.addr, bearer.clone(), paths.clone(), n, flags),
                )
                .await;
                answered += answered_in_cell;
                cells.push(HttpCell {
                    via: via.to_owned(),
                    ..cell
                });
            }
        }
    }
    // Stopping lets the services finish what they had started; every read
    // answered was committed before its answer, so none is waited for here.
    api.stop()?;
    auditor.stop()?;
    let recorded_reads = count_reads(store).await? - recorded_before;
    if recorded_reads < answered {
        bail!(
            "{answered} reads were answered but only {recorded_reads} audit.read events \
             were stored: answered reads went unrecorded"
        );
    }
    Ok(HttpReport {
        events_at_start,
        seconds_per_cell: options.duration.as_secs_f64(),
        cells,
        answered_reads: answered,
        recorded_reads,
    })
}

/// The `audit.read` events in `store`.
async fn count_reads(store: &dyn AuditStore) -> Result<u64> {
    let reads = EventQuery {
        event_names: vec!["audit.read".into()],
        ..EventQuery::default()
    };
    Ok(store.count(&reads).await?)
}

/// What a cell's clients share with it: whether their answers are timed yet,
/// whether to go on, and the failures counted.
#[derive(Clone, Default)]
struct Flags {
    measuring: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
}

/// A client's latencies (µs) of the reads answered while measuring, and every
/// read it got answered.
type ClientResult = (Vec<u64>, u64);

impl Flags {
    /// Counts one read sent at `sent` into `result`: answered (and timed, while
    /// measuring) or failed.
    fn count(&self, sent: Instant, answered: bool, result: &mut ClientResult) {
        if answered {
            result.1 += 1;
            if self.measuring.load(Ordering::Relaxed) {
                result.0.push(sent.elapsed().as_micros() as u64);
            }
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One cell: `clients` clients made by `client` (each given its number and the
/// flags) timed for `duration` after a warm-up, with the CPU time of the
/// auditor and the primary API (`services`' pids, when they run) and of this
/// process. The cell (without `via`) and every read answered, warm-up included.
async fn measure<C, F>(
    shape: &str,
    clients: usize,
    duration: Duration,
    services: Option<[u32; 2]>,
    client: C,
) -> (HttpCell, u64)
where
    C: Fn(usize, Flags) -> F,
    F: Future<Output = ClientResult> + Send + 'static,
{
    let flags = Flags::default();
    let workers: Vec<_> = (0..clients.max(1))
        .map(|n| tokio::spawn(client(n, flags.clone())))
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let cpu = |pid: Option<u32>| match pid {
        Some(pid) => crate::cpu::of_process(pid),
        None => Some(CpuTime::default()),
    };
    let pids = [
        services.map(|[auditor, _]| auditor),
        services.map(|[_, api]| api),
        Some(std::process::id()),
    ];
    let before = pids.map(cpu);
    flags.errors.store(0, Ordering::Relaxed);
    flags.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    flags.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let after = pids.map(cpu);
    let errors = flags.errors.load(Ordering::Relaxed);
    flags.stopped.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut answered = 0;
    for worker in workers {
        if let Ok((measured, answered_by_worker)) = worker.await {
            latencies.extend(measured);
            answered += answered_by_worker;
        }
    }
    let requests = latencies.len() as u64;
    let per_request = |i: usize| -> Option<f64> {
        let spent: CpuTime = after[i]?.since(&before[i]?);
        Some(spent.total_ns() as f64 / 1_000.0 / requests.max(1) as f64)
    };
    let cpu_us_per_request = match (per_request(0), per_request(1), per_request(2)) {
        (Some(auditor), Some(api), Some(clients)) => Some(HttpCpu {
            auditor,
            api,
            clients,
        }),
        _ => None,
    };
    let p = percentiles(latencies);
    let cell = HttpCell {
        via: String::new(),
        shape: shape.to_owned(),
        clients,
        requests,
        errors,
        requests_per_sec: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: p.p50 as f64 / 1_000.0,
        p99_ms: p.p99 as f64 / 1_000.0,
        cpu_us_per_request,
    };
    (cell, answered)
}

/// Where client number `first` starts going round a shape's queries (taken
/// modulo their number), so that clients do not ask the same thing at the same
/// moment.
fn start_of(first: usize) -> usize {
    first.wrapping_mul(7919)
}

/// One client of the store alone: the next query as soon as the last one's
/// page is read.
async fn store_loop(
    store: Arc<dyn AuditStore>,
    queries: Arc<Vec<EventQuery>>,
    first: usize,
    flags: Flags,
) -> ClientResult {
    let mut result = ClientResult::default();
    let mut next = start_of(first);
    while !flags.stopped.load(Ordering::Relaxed) {
        let Some(query) = queries.get(next % queries.len().max(1)) else {
            break;
        };
        next = next.wrapping_add(1);
        let asked = Instant::now();
        let answered = store.query(query).await.is_ok();
        flags.count(asked, answered, &mut result);
    }
    result
}

/// One client: a keep-alive connection (made again if it fails) sending the
/// next path as soon as the last answer is read.
async fn client_loop(
    addr: SocketAddr,
    bearer: String,
    paths: Arc<Vec<String>>,
    first: usize,
    flags: Flags,
) -> ClientResult {
    let host = addr.to_string();
    let mut result = ClientResult::default();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    let mut next = start_of(first);
    while !flags.stopped.load(Ordering::Relaxed) {
        let sender = match &mut connection {
            Some(sender) => sender,
            None => match connect(addr).await {
                Ok(sender) => connection.insert(sender),
                Err(_) => {
                    flags.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let path = &paths[next % paths.len()];
        next = next.wrapping_add(1);
        let Ok(request) = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, &host)
            .header(hyper::header::AUTHORIZATION, &bearer)
            .body(Empty::<Bytes>::new())
        else {
            flags.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let sent = Instant::now();
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await.is_ok() && status == hyper::StatusCode::OK
            }
            Err(_) => {
                connection = None;
                false
            }
        };
        flags.count(sent, ok, &mut result);
    }
    result
}

/// A new HTTP/1.1 connection to `addr`, its driver spawned.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A service process of the run, stopped (SIGTERM) when dropped.
struct Service {
    child: Option<Child>,
    url: String,
    addr: SocketAddr,
}

impl Service {
    /// Starts `binary args` on `data_dir` and waits for the line announcing
    /// `name` and its URL.
    fn start(binary: &Path, args: &[&str], data_dir: &Path, name: &str) -> Result<Service> {
        let mut child = Command::new(binary)
            .args(args)
            .env("AUDITLOG_DATA_DIR", data_dir)
            // The default log filter, as deployed: a request's span is part of
            // what it costs.
            .env_remove("AUDITLOG_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("while starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next() {
            let line = line?;
            if line.contains(name)
                && let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://"))
            {
                let addr = url
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .with_context(|| format!("the {name} printed an odd URL: {url}"))?;
                // Keep reading what it prints later: a closed pipe would fail its writes.
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(Service {
                    child: Some(child),
                    url: url.to_owned(),
                    addr,
                });
            }
        }
        let _ = child.kill();
        bail!("the {name} exited before printing its URL")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, and the wait for it to exit.
    fn stop(mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            child.wait()?;
        }
        Ok(())
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let _ = child.wait();
        }
    }
}

impl HttpReport {
    /// The human-readable table, each cell beside the store's own latency for
    /// its shape (`store`: one query at a time, through `AuditStore::query`).
    pub fn table(&self, store_latency: &dyn Fn(&str) -> String) -> String {
        let mut out = format!(
            "\nHTTP ({:.0} s per cell; store at {} events when it started)\n{:<8} {:<24} {:>7} {:>11} {:>8} {:>8} {:>7} {:>26} {:>16}\n",
            self.seconds_per_cell,
            self.events_at_start,
            "via",
            "shape",
            "clients",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "CPU µs/read aud/api/bench",
            "store p50/p99"
        );
        for cell in &self.cells {
            let cpu = cell.cpu_us_per_request.map_or("-".to_owned(), |cpu| {
                if cell.via == "store" {
                    format!("- / - / {:.0}", cpu.clients)
                } else {
                    format!("{:.0} / {:.0} / {:.0}", cpu.auditor, cpu.api, cpu.clients)
                }
            });
            out.push_str(&format!(
                "{:<8} {:<24} {:>7} {:>11.0} {:>8.2} {:>8.2} {:>7} {:>26} {:>16}\n",
                cell.via,
                cell.shape,
                cell.clients,
                cell.requests_per_sec,
                cell.p50_ms,
                cell.p99_ms,
                cell.errors,
                cpu,
                store_latency(&cell.shape)
            ));
        }
        out.push_str(&format!(
            "reads answered {}, audit.read events stored {}{}\n",
            self.answered_reads,
            self.recorded_reads,
            if self.recorded_reads == self.answered_reads {
                " (equal)"
            } else {
                " (NOT equal)"
            }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use auditlog_event::ObjectType;
    use auditlog_store::ObjectKey;

    #[test]
    fn a_query_is_asked_by_its_route_with_its_page_range_and_cursor() {
        let actor = EventQuery {
            actor: Some(ObjectKey {
                object_type: ObjectType::parse("actorType", "users").unwrap(),
                id: "7".into(),
            }),
            page_size: 50,
            since: Some(10),
            until: Some(20),
            ..EventQuery::default()
        };
        let target = EventQuery {
            target: Some(ObjectKey {
                object_type: ObjectType::parse("targetType", "documents").unwrap(),
                id: "3".into(),
            }),
            page_size: 50,
            ..EventQuery::default()
        };

        assert_eq!(
            path_of(&actor).unwrap(),
            "/events/by/users/7?page%5Bsize%5D=50&filter%5Bsince%5D=10&filter%5Buntil%5D=20"
        );
        assert_eq!(
            path_of(&target).unwrap(),
            "/events/on/documents/3?page%5Bsize%5D=50"
        );
        assert!(path_of(&EventQuery::default()).is_err());
    }
}
