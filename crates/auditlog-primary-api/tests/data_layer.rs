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
    the_seed_user_is_an_admin_who_agreed_to_the_terms,
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
);

mod scenarios {
    use super::*;

    pub async fn the_seed_user_is_an_admin_who_agreed_to_the_terms(mut env: Env) {
        let user = env.users.get(&admin(), 1).await.unwrap();

        assert_eq!(
            user,
            User {
                id: 1,
                name: "James Chavo".into(),
                email: "jim.chavo@happi.com".into(),
                agreed_tos: true,
                role: UserRole::Admin,
            }
        );
        assert_eq!(
            describe(&env.events.take().await),
            ["viewed users:1 by users:1"]
        );
    }

    pub async fn the_first_open_records_the_seed_user_as_created_once(mut env: Env) {
        // `Env::open` opened the fresh database twice at once, and took what that
        // staged.
        assert_eq!(describe(&env.seeded), ["created users:1 by system:seed"]);
        assert_eq!(
            changes(&env.seeded[0]),
            json!({
                "name": {"prev": null, "next": "James Chavo"},
                "email": {"prev": null, "next": "jim.chavo@happi.com"},
                "agreedTos": {"prev": null, "next": true},
                "role": {"prev": null, "next": "admin"},
            })
        );
        assert_eq!(env.seeded[0].producer_seq, Some(1), "the outbox's first");

        // Restarts seed nothing, so they record nothing either.
        let (first, second) = tokio::join!(AppDb::open(&env.url), AppDb::open(&env.url));
        first.unwrap();
        second.unwrap();

        assert_eq!(env.events.relay.staged().await.unwrap(), 0);
        assert_eq!(describe(&env.events.take().await), [] as [String; 0]);
    }

    pub async fn creating_a_user_emits_created_with_every_field_then_viewed(mut env: Env) {
        let new = NewUser {
            name: "  Ann Lee ".into(),
            ..new_user("ann@example.com")
        };

        let ann = env.users.create(&admin(), new).await.unwrap();

        assert!(
            ann.id > 1,
            "new users are numbered after the seed: {}",
            ann.id
        );
        assert_eq!(ann.name, "Ann Lee");
        let events = env.events.take().await;
        let id = ann.id;
        assert_eq!(
            describe(&events),
            done(1, "users", id, &["created", "viewed"])
        );
        assert_eq!(
            changes(&events[0]),
            json!({
                "name": {"prev": null, "next": "Ann Lee"},
                "email": {"prev": null, "next": "ann@example.com"},
                "agreedTos": {"prev": null, "next": false},
                "role": {"prev": null, "next": "user"},
            })
        );
        assert_eq!(changes(&events[1]), Value::Null);
        assert_eq!(env.users.find_unaudited(id).await.unwrap(), Some(ann));
    }

    pub async fn an_update_emits_only_the_fields_that_really_changed(mut env: Env) {
        let ann = create(&mut env, "ann@example.com").await;
        let patch = UserPatch {
            name: Some(ann.name.clone()),
            agreed_tos: Some(true),
            ..UserPatch::default()
        };

        let after = env
            .users
            .update(&admin(), ann.id, patch.clone())
            .await
            .unwrap();

        assert!(after.agreed_tos);
        let events = env.events.take().await;
        let id = ann.id;
        assert_eq!(
            describe(&events),
            done(1, "users", id, &["changed", "viewed"])
        );
        assert_eq!(
            changes(&events[0]),
            json!({"agreedTos": {"prev": false, "next": true}})
        );
        assert_eq!(env.users.find_unaudited(id).await.unwrap(), Some(after));

        env.users.update(&admin(), id, patch).await.unwrap();

        assert_eq!(
            describe(&env.events.take().await),
            done(1, "users", id, &["viewed"]),
            "a patch that changes nothing emits no `changed`"
        );
    }

    pub async fn a_delete_emits_deleted_only_when_the_user_existed(mut env: Env) {
        let ann = create(&mut env, "ann@example.com").await;

        env.users.delete(&admin(), ann.id).await.unwrap();

        let events = env.events.take().await;
        assert_eq!(describe(&events), done(1, "users", ann.id, &["deleted"]));
        assert_eq!(
            changes(&events[0]),
            json!({
                "name": {"prev": "Ann Lee", "next": null},
                "email": {"prev": "ann@example.com", "next": null},
                "agreedTos": {"prev": false, "next": null},
                "role": {"prev": "user", "next": null},
            })
        );

        let again = env.users.delete(&admin(), ann.id).await;

        assert!(matches!(again, Err(DataError::NotFound)), "{again:?}");
        assert!(env.users.find_unaudited(ann.id).await.unwrap().is_none());
        assert_eq!(describe(&env.events.take().await), [] as [String; 0]);
    }

    pub async fn a_duplicate_email_is_a_conflict_that_changes_nothing(mut env: Env) {
        create(&mut env, "ann@example.com").await;
        let bob = create(&mut env, "bob@example.com").await;

        let on_create = env
            .users
            .create(&admin(), new_user("ann@example.com"))
            .await;
        let on_update = env
            .users
            .update(
                &admin(),
                bob.id,
                UserPatch {
                    name: Some("Bob Again".into()),
                    email: Some("ann@example.com".into()),
                    ..UserPatch::default()
                },
            )
            .await;

        assert!(
            matches!(on_create, Err(DataError::Conflict(_))),
            "{on_create:?}"
        );
        assert!(
            matches!(on_update, Err(DataError::Conflict(_))),
            "{on_update:?}"
        );
        assert_eq!(describe(&env.events.take().await), [] as [String; 0]);
        assert_eq!(env.users.find_unaudited(bob.id).await.unwrap(), Some(bob));
        assert_eq!(
            emails(&mut env).await,
            ["jim.chavo@happi.com", "ann@example.com", "bob@example.com"]
        );
    }

    pub async fn a_member_may_change_only_themselves(mut env: Env) {
        let ann = create(&mut env, "ann@example.com").await;
        let seed = env.users.find_unaudited(1).await.unwrap();
        let member = Actor::from(Principal::new(ann.id.to_string(), Role::User).unwrap());
        let rename = UserPatch {
            name: Some("Mallory".into()),
            ..UserPatch::default()
        };

        let update = env.users.update(&member, 1, rename.clone()).await;
        let delete = env.users.delete(&member, 1).await;
        let create = env.users.create(&member, new_user("eve@example.com")).await;

        assert!(matches!(update, Err(DataError::Forbidden(_))), "{update:?}");
        assert!(matches!(delete, Err(DataError::Forbidden(_))), "{delete:?}");
        assert!(matches!(create, Err(DataError::Forbidden(_))), "{create:?}");
        assert_eq!(describe(&env.events.take().await), [] as [String; 0]);
        assert_eq!(env.users.find_unaudited(1).await.unwrap(), seed);

        env.users.update(&member, ann.id, rename).await.unwrap();

        let id = ann.id;
        assert_eq!(
            describe(&env.events.take().await),
            done(id, "users", id, &["changed", "viewed"])
        );
    }

    pub async fn notes_are_written_read_and_listed_by_their_target(mut env: Env) {
        let target = NoteTarget::parse("users:1").unwrap();

        let first = env
            .notes
            .create(&admin(), target.clone(), "Called about the invoice".into())
            .await
            .unwrap();

        let events = env.events.take().await;
        let id = first.id;
        assert_eq!(
            describe(&events),
            done(1, "notes", id, &["created", "viewed"])
        );
        assert_eq!(
            changes(&events[0]),
            json!({
                "target": {"prev": null, "next": "users:1"},
                "body": {"prev": null, "next": "Called about the invoice"},
                "authorId": {"prev": null, "next": 1},
            })
        );

        // Four-byte characters: MySQL keeps them only in utf8mb4.
        let second = env
            .notes
            .create(&admin(), target.clone(), "Résumé received 🎉".into())
            .await
            .unwrap();
        env.events.take().await;

        assert_eq!(env.notes.get(&admin(), id).await.unwrap(), first);
        assert_eq!(
            describe(&env.events.take().await),
            done(1, "notes", id, &["viewed"])
        );
        let about = env.notes.about(&admin(), &target).await.unwrap();
        assert_eq!(about, [first, second.clone()]);
        assert_eq!(describe(&env.events.take().await).len(), 2);
        let elsewhere = NoteTarget::parse("users:2").unwrap();
        assert!(
            env.notes
                .about(&admin(), &elsewhere)
                .await
                .unwrap()
                .is_empty()
        );
        let missing = env.notes.get(&admin(), second.id + 1000).await;
        assert!(matches!(missing, Err(DataError::NotFound)), "{missing:?}");
        assert_eq!(describe(&env.events.take().await), [] as [String; 0]);
    }

    pub async fn reopening_keeps_the_data_and_seeds_once(mut env: Env) {
        let ann = create(&mut env, "ann@example.com").await;

        // As two processes starting together would.
        let (first, second) = tokio::join!(AppDb::open(&env.url), AppDb::open(&env.url));
        second.unwrap();
        let users = Users::new(first.unwrap(), env.recorder.clone());

        let all = users.list(&admin()).await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].email, "jim.chavo@happi.com");
        assert_eq!(all[1], ann);
        let bob = users
            .create(&admin(), new_user("bob@example.com"))
            .await
            .unwrap();
        assert!(
            bob.id > ann.id,
            "ids keep counting: {} after {}",
            bob.id,
            ann.id
        );
    }

    pub async fn a_rolled_back_change_stages_no_event(mut env: Env) {
        let ann = create(&mut env, "ann@example.com").await;
        create(&mut env, "bob@example.com").await;
        let clash = UserPatch {
            name: Some("Ann B".into()),
            email: Some("bob@example.com".into()),
            ..UserPatch::default()
        };

        let refused = env.users.update(&admin(), ann.id, clash).await;

        assert!(
            matches!(refused, Err(DataError::Conflict(_))),
            "{refused:?}"
        );
        assert_eq!(env.events.relay.staged().await.unwrap(), 0);
        assert_eq!(describe(&env.events.take().await), [] as [String; 0]);
    }

    pub async fn outbox_events_carry_one_gapless_sequence_across_restarts(mut env: Env) {
        for email in ["a@example.com", "b@example.com", "c@example.com"] {
            env.users.create(&admin(), new_user(email)).await.unwrap();
        }
        // The seed's `created`, staged by the first open, is the outbox's first.
        let mut before = env.seeded.clone();
        before.extend(env.events.take().await);
        let mut reopened = Env::open(env.url.clone()).await;
        reopened
            .users
            .create(&admin(), new_user("d@example.com"))
            .await
            .unwrap();
        let after = reopened.events.take().await;

        let numbered: Vec<(String, u64)> = before
            .iter()
            .chain(&after)
            .filter(|event| event.action == Action::Created)
            .map(|event| {
                (
                    event.producer_id.clone().unwrap(),
                    event.producer_seq.unwrap(),
                )
            })
            .collect();
        assert_eq!(numbered.len(), 5);
        assert!(numbered[0].0.starts_with("api-outbox/"), "{numbered:?}");
        assert!(
            numbered
                .iter()
                .all(|(producer, _)| producer == &numbered[0].0)
        );
        let seqs: Vec<u64> = numbered.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    pub async fn a_failing_transport_leaves_events_in_the_outbox(mut env: Env) {
        let down = OutboxRelay::new(env.users_db(), Arc::new(Down), &env.recorder);
        env.users
            .create(&admin(), new_user("ann@example.com"))
            .await
            .unwrap();
        assert!(down.relay_once().await.is_err());
        assert_eq!(down.staged().await.unwrap(), 1);

        let events = env.events.take().await;

        assert_eq!(env.events.relay.staged().await.unwrap(), 0);
        let created: Vec<_> = events
            .iter()
            .filter(|event| event.action == Action::Created)
            .collect();
        assert_eq!(created.len(), 1);
    }

    pub async fn a_password_is_recorded_as_a_masked_change_never_its_value(mut env: Env) {
        let secret = "correct horse battery staple";
        let ann = env
            .users
            .create(
                &admin(),
                NewUser {
                    password: Some(secret.into()),
                    ..new_user("ann@example.com")
                },
            )
            .await
            .unwrap();
        let patch = UserPatch {
            password: Some("another long secret".into()),
            ..UserPatch::default()
        };
        env.users.update(&admin(), ann.id, patch).await.unwrap();

        let events = env.events.take().await;
        let created = events.iter().find(|e| e.action == Action::Created).unwrap();
        assert_eq!(
            changes(created)["password"],
            json!({"prev": null, "next": null, "masked": true})
        );
        let changed = events.iter().find(|e| e.action == Action::Changed).unwrap();
        assert_eq!(
            changes(changed),
            json!({"password": {"prev": null, "next": null, "masked": true}})
        );
        for event in &events {
            assert!(
                !event.to_json().contains("horse"),
                "the password leaked: {}",
                event.to_json()
            );
        }
        let too_short = UserPatch {
            password: Some("short".into()),
            ..UserPatch::default()
        };
        assert!(matches!(
            env.users.update(&admin(), ann.id, too_short).await,
            Err(DataError::Invalid(_))
        ));
    }

    pub async fn concurrent_patches_of_one_user_chain_their_diffs(mut env: Env) {
        const PATCHES: usize = 20;
        let ann = create(&mut env, "ann@example.com").await;
        // Every task patches at the same moment, half of them agreeing, half not.
        let start = Arc::new(tokio::sync::Barrier::new(PATCHES));
        let tasks: Vec<_> = (0..PATCHES)
            .map(|i| {
                let (users, start) = (env.users.clone(), start.clone());
                let patch = UserPatch {
                    agreed_tos: Some(i % 2 == 0),
                    ..UserPatch::default()
                };
                tokio::spawn(async move {
                    start.wait().await;
                    users.update(&admin(), ann.id, patch).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }

        let diffs: Vec<(Value, Value)> = env
            .events
            .take()
            .await
            .iter()
            .filter(|event| event.action == Action::Changed)
            .map(|event| {
                let change = &event.changes.as_ref().unwrap()["agreedTos"];
                (change.prev.clone(), change.next.clone())
            })
            .collect();
        assert!(!diffs.is_empty());
        let mut current = json!(false);
        for (prev, next) in &diffs {
            assert_eq!(prev, &current, "each prev is the previous next: {diffs:?}");
            assert_ne!(prev, next, "{diffs:?}");
            current = next.clone();
        }
        let stored = env.users.find_unaudited(ann.id).await.unwrap().unwrap();
        assert_eq!(current, json!(stored.agreed_tos), "{diffs:?}");
    }
}

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
