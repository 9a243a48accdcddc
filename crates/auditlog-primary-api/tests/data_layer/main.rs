//! The data layer against real databases: one suite of scenarios, run alike on
//! SQLite, PostgreSQL and MySQL/MariaDB (`suite!` generates a module per backend).
//! Each test gets a database of its own, created for it and dropped after it, and
//! reads the events each operation emits from a real emitter's embedded transport.
//!
//! The servers are those of the project's machines unless `AUDITLOG_TEST_POSTGRES_URL`
//! or `AUDITLOG_TEST_MYSQL_URL` names others; a server that cannot be reached fails
//! the test with the command that starts it, never skips it.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auditlog_auth::{Principal, Role};
use auditlog_emit::embedded::{self, EmbeddedReceiver};
use auditlog_emit::{Emitter, EmitterConfig, EmitterTask};
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_primary_api::notes::{NoteTarget, Notes};
use auditlog_primary_api::outbox::OutboxRelay;
use auditlog_primary_api::users::{NewUser, User, UserPatch, UserRole, Users};
use auditlog_primary_api::{Actor, AppDb, DataError, Recorder};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, MySqlConnection, PgConnection};

/// Generates, for each backend, a module with one test per scenario.
macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        suite!(@backend sqlite, Sqlite, $($scenario),*);
        suite!(@backend postgres, Postgres, $($scenario),*);
        suite!(@backend mysql, MySql, $($scenario),*);
    };
    (@backend $module:ident, $backend:ident, $($scenario:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run(super::Backend::$backend, super::scenarios::$scenario).await;
                }
            )*
        }
    };
}

suite!(
    the_seed_user_is_the_operator_who_agreed_to_the_terms,
    the_first_open_records_the_seed_user_as_created_once,
    creating_a_user_emits_created_with_every_field_then_viewed,
    an_update_emits_only_the_fields_that_really_changed,
    a_delete_emits_deleted_only_when_the_user_existed,
    a_duplicate_email_is_a_conflict_that_changes_nothing,
    a_member_may_change_only_themselves,
    notes_are_written_read_and_listed_by_their_target,
    reopening_keeps_the_data_and_seeds_once,
    concurrent_patches_of_one_user_chain_their_diffs,
    a_rolled_back_change_stages_no_event,
    outbox_events_carry_one_gapless_sequence_across_restarts,
    a_failing_transport_leaves_events_in_the_outbox,
    a_password_is_recorded_as_a_masked_change_never_its_value,
    an_earlier_release_gets_tenants_and_its_admin_becomes_the_operator,
    an_admin_manages_only_the_users_of_its_tenant,
);

mod scenarios;

// ---- the world each scenario runs in ----

/// A transport that never confirms.
struct Down;

#[async_trait::async_trait]
impl auditlog_emit::Transport for Down {
    async fn publish(&self, _: &[DataEvent]) -> Result<(), auditlog_emit::TransportError> {
        Err(auditlog_emit::TransportError::Unavailable("down".into()))
    }
}

/// The backends the suite runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// What a scenario works with: the repositories over a fresh database, and the
/// events they emit.
struct Env {
    /// The fresh database's URL, for opening it again.
    url: String,
    db: AppDb,
    users: Users,
    notes: Notes,
    recorder: Recorder,
    events: Events,
    /// What opening the fresh database staged in the outbox (the seed user's
    /// `created`), taken before the scenario starts, so that each scenario's
    /// events are those of what it does.
    seeded: Vec<DataEvent>,
}

impl Env {
    /// Opens the fresh database twice at once, as two processes starting together
    /// would, so that every scenario also checks that a concurrent first open is safe.
    async fn open(url: String) -> Env {
        let (db, other) = tokio::join!(AppDb::open(&url), AppDb::open(&url));
        other.unwrap();
        let db = db.unwrap();
        let (transport, receiver) = embedded::channel(16);
        let (emitter, task) =
            Emitter::start(Arc::new(transport.clone()), EmitterConfig::default()).unwrap();
        let recorder = Recorder::new(emitter.clone());
        let mut events = Events {
            emitter,
            receiver,
            relay: OutboxRelay::new(db.clone(), Arc::new(transport), &recorder),
            _task: task,
        };
        let seeded = events.take().await;
        Env {
            db: db.clone(),
            users: Users::new(db.clone(), recorder.clone()),
            notes: Notes::new(db, recorder.clone()),
            recorder,
            events,
            url,
            seeded,
        }
    }
}

impl Env {
    fn users_db(&self) -> AppDb {
        self.db.clone()
    }
}

/// A real emitter and outbox relay sharing one embedded transport, which the test
/// reads, acknowledging each batch.
struct Events {
    emitter: Emitter,
    receiver: EmbeddedReceiver,
    relay: OutboxRelay,
    /// Kept alive: dropping it stops the emitter's task.
    _task: EmitterTask,
}

impl Events {
    /// Every event recorded since the last call, in the order they happened (reads
    /// come from the emitter, mutations from the outbox; UUIDv7 ids order them).
    /// The emitter keeps the order of its queue, so a marker emitted now arrives
    /// after all its events; the relay is drained to the end meanwhile.
    async fn take(&mut self) -> Vec<DataEvent> {
        let relay = self.relay.clone();
        let drain = tokio::spawn(async move { while relay.relay_once().await.unwrap() > 0 {} });
        let marker_type = ObjectType::parse("targetType", "test-marker").unwrap();
        let marker = DataEvent::new(
            Action::Viewed,
            ObjectRef::new(marker_type.clone(), 0),
            ObjectRef::new(marker_type, 0),
            0,
        );
        let marker_id = marker.id;
        self.emitter.emit(marker);
        let mut taken = Vec::new();
        let mut marker_seen = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(marker_seen && drain.is_finished()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "events did not arrive in 10 s"
            );
            let Ok(delivery) =
                tokio::time::timeout(Duration::from_millis(20), self.receiver.recv()).await
            else {
                continue;
            };
            let delivery = delivery.expect("the transport closed");
            let events = delivery.events.clone();
            delivery.ack();
            marker_seen |= events.iter().any(|event| event.id == marker_id);
            taken.extend(events.into_iter().filter(|event| event.id != marker_id));
        }
        drain.await.unwrap();
        taken.sort_by_key(|event| (event.timestamp, event.id));
        taken
    }
}

/// Runs `scenario` on a database made for it, and drops the database afterwards even
/// when the scenario fails.
async fn run<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(Env) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = FreshDb::create(backend).await;
    let url = db.url.clone();
    let outcome = tokio::spawn(async move { scenario(Env::open(url).await).await }).await;
    db.drop().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// A database made for one test: a file in a temporary directory, or a database
/// `auditlog_app_test_<random>` on a server.
struct FreshDb {
    url: String,
    place: Place,
}

enum Place {
    Dir(tempfile::TempDir),
    Server(Server, String),
}

impl FreshDb {
    async fn create(backend: Backend) -> FreshDb {
        let name = format!("auditlog_app_test_{:016x}", getrandom::u64().unwrap());
        let server = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                return FreshDb {
                    url: format!("sqlite://{}", dir.path().join("app.db").display()),
                    place: Place::Dir(dir),
                };
            }
            Backend::Postgres => Server::postgres().await,
            Backend::MySql => Server::mysql().await,
        };
        // The name is ours (letters, digits, underscores): safe to put in the SQL.
        server.execute(format!("CREATE DATABASE {name}")).await;
        FreshDb {
            url: with_database(&server.base_url, &name),
            place: Place::Server(server, name),
        }
    }

    async fn drop(self) {
        let (server, name) = match self.place {
            Place::Dir(dir) => return dir.close().unwrap(),
            Place::Server(server, name) => (server, name),
        };
        // FORCE: the scenario's pools may still hold connections as they close.
        let drop = match server.kind {
            ServerKind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ServerKind::MySql => format!("DROP DATABASE IF EXISTS {name}"),
        };
        server.execute(drop).await;
    }
}

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Where PostgreSQL was installed without a `postgres` role, the OS user's is used.
const FALLBACK_POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";
const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A database server reached through its base URL, where test databases are made.
struct Server {
    kind: ServerKind,
    base_url: String,
}

#[derive(Clone, Copy)]
enum ServerKind {
    Postgres,
    MySql,
}

impl Server {
    async fn postgres() -> Server {
        let configured = std::env::var("AUDITLOG_TEST_POSTGRES_URL").ok();
        let mut base_url = configured.clone().unwrap_or(DEFAULT_POSTGRES_URL.into());
        let mut reached = PgConnection::connect(&base_url).await.map(drop);
        let no_such_role = |err: &sqlx::Error| {
            err.as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "28000")
        };
        if configured.is_none() && reached.as_ref().is_err_and(no_such_role) {
            base_url = FALLBACK_POSTGRES_URL.into();
            reached = PgConnection::connect(&base_url).await.map(drop);
        }
        let server = Server {
            kind: ServerKind::Postgres,
            base_url,
        };
        server.reached_or_fail(reached);
        server
    }

    async fn mysql() -> Server {
        let base_url = std::env::var("AUDITLOG_TEST_MYSQL_URL").unwrap_or(DEFAULT_MYSQL_URL.into());
        let reached = MySqlConnection::connect(&base_url).await.map(drop);
        let server = Server {
            kind: ServerKind::MySql,
            base_url,
        };
        server.reached_or_fail(reached);
        server
    }

    /// Fails the test, loudly and with the way out, when the server is unreachable.
    fn reached_or_fail(&self, reached: Result<(), sqlx::Error>) {
        let Err(err) = reached else { return };
        let (name, variable, start) = match self.kind {
            ServerKind::Postgres => (
                "PostgreSQL",
                "AUDITLOG_TEST_POSTGRES_URL",
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            ),
            ServerKind::MySql => (
                "MariaDB/MySQL",
                "AUDITLOG_TEST_MYSQL_URL",
                "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
            ),
        };
        panic!(
            "{name} is not reachable at {}: {err}\n\
             start it with `{start}`, or set {variable} to a server that runs",
            self.base_url
        );
    }

    async fn execute(&self, sql: String) {
        let result = match self.kind {
            ServerKind::Postgres => {
                let mut conn = PgConnection::connect(&self.base_url).await.unwrap();
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .execute(&mut conn)
                    .await
                    .map(drop)
            }
            ServerKind::MySql => {
                let mut conn = MySqlConnection::connect(&self.base_url).await.unwrap();
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .execute(&mut conn)
                    .await
                    .map(drop)
            }
        };
        if let Err(err) = result {
            panic!("`{sql}` failed on {}: {err}", self.base_url);
        }
    }
}

/// Runs one statement on the database at `url`, whatever its backend.
async fn execute_on(url: &str, sql: &str) {
    let sql = AssertSqlSafe(sql.to_owned());
    let result = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.map(drop)
    } else if url.starts_with("postgres") {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.map(drop)
    } else {
        let mut conn = MySqlConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.map(drop)
    };
    result.unwrap();
}

/// `base` with its database replaced by `name`, keeping any query string.
fn with_database(base: &str, name: &str) -> String {
    let (url, query) = base.split_once('?').unwrap_or((base, ""));
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{scheme}://{authority}/{name}{query}")
}

// ---- small helpers ----

fn admin() -> Actor {
    Actor::from(Principal::new("1".into(), Role::Admin).unwrap())
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        name: "Ann Lee".into(),
        email: email.into(),
        agreed_tos: false,
        role: UserRole::User,
        tenant: None,
        password: None,
    }
}

/// Creates a user as the admin and forgets the events that emitted.
async fn create(env: &mut Env, email: &str) -> User {
    let user = env.users.create(&admin(), new_user(email)).await.unwrap();
    env.events.take().await;
    user
}

/// Every user's email, by id; forgets the `viewed` events listing them emitted.
async fn emails(env: &mut Env) -> Vec<String> {
    let users = env.users.list(&admin()).await.unwrap();
    env.events.take().await;
    users.into_iter().map(|user| user.email).collect()
}

/// What `done` by user `actor` to `target_type` `target_id` looks like in [`describe`].
fn done(actor: i64, target_type: &str, target_id: i64, actions: &[&str]) -> Vec<String> {
    actions
        .iter()
        .map(|action| format!("{action} {target_type}:{target_id} by users:{actor}"))
        .collect()
}

/// Each event as `action type:id by type:id`.
fn describe(events: &[DataEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}:{} by {}:{}",
                e.action, e.target_type, e.target_id, e.actor_type, e.actor_id
            )
        })
        .collect()
}

/// An event's changes as JSON (`null` when it has none).
fn changes(event: &DataEvent) -> Value {
    serde_json::to_value(&event.changes).unwrap()
}
