//! The scenarios of the data-layer suite; `suite!` in `main.rs` runs each on every
//! backend.

use super::*;

pub async fn the_seed_user_is_the_operator_who_agreed_to_the_terms(mut env: Env) {
    let user = env.users.get(&admin(), 1).await.unwrap();

    assert_eq!(
        user,
        User {
            id: 1,
            name: "James Chavo".into(),
            email: "jim.chavo@happi.com".into(),
            agreed_tos: true,
            role: UserRole::Operator,
            tenant: "default".into(),
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
            "tenant": {"prev": null, "next": "default"},
            "role": {"prev": null, "next": "operator"},
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
            "tenant": {"prev": null, "next": "default"},
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
            "tenant": {"prev": "default", "next": null},
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

pub async fn an_earlier_release_gets_tenants_and_its_admin_becomes_the_operator(mut env: Env) {
    let ann = create(&mut env, "ann@example.com").await;
    // The tables as a release before tenants left them, with user 1 its admin.
    execute_on(&env.url, "ALTER TABLE users DROP COLUMN tenant").await;
    execute_on(&env.url, "ALTER TABLE notes DROP COLUMN tenant").await;
    execute_on(&env.url, "UPDATE users SET role = 'admin' WHERE id = 1").await;

    let db = AppDb::open(&env.url).await.unwrap();
    let users = Users::new(db, env.recorder.clone());

    let one = users.find_unaudited(1).await.unwrap().unwrap();
    assert_eq!(
        (one.role, one.tenant.as_str()),
        (UserRole::Operator, "default")
    );
    let ann = users.find_unaudited(ann.id).await.unwrap().unwrap();
    assert_eq!((ann.role, ann.tenant.as_str()), (UserRole::User, "default"));
    // The promotion is the system's change of user 1's rights, in the log.
    let events = env.events.take().await;
    assert_eq!(describe(&events), ["changed users:1 by system:seed"]);
    assert_eq!(events[0].event_name.as_deref(), Some("auth.rights_changed"));
    assert_eq!(
        changes(&events[0]),
        json!({"role": {"prev": "admin", "next": "operator"}})
    );
    // Only once.
    AppDb::open(&env.url).await.unwrap();
    assert!(env.events.take().await.is_empty());
}

pub async fn an_admin_manages_only_the_users_of_its_tenant(mut env: Env) {
    let operator = Actor::from(Principal::new("1".into(), Role::Operator).unwrap());
    let acme_admin = env
        .users
        .create(
            &operator,
            NewUser {
                role: UserRole::Admin,
                tenant: Some("acme".into()),
                ..new_user("admin@acme.example")
            },
        )
        .await
        .unwrap();
    let acme = Actor::from(
        Principal::new(acme_admin.id.to_string(), Role::Admin)
            .unwrap()
            .in_tenant("acme"),
    );
    let acme_member = env
        .users
        .create(&acme, new_user("member@acme.example"))
        .await
        .unwrap();
    assert_eq!(acme_member.tenant, "acme", "created in the admin's tenant");
    let ann = create(&mut env, "ann@example.com").await;
    env.events.take().await;

    // Another tenant's user is not there for acme's admin.
    let listed: Vec<i64> = env
        .users
        .list(&acme)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(listed, [acme_admin.id, acme_member.id]);
    for result in [
        env.users.get(&acme, ann.id).await.map(drop),
        env.users
            .update(
                &acme,
                ann.id,
                UserPatch {
                    name: Some("Taken".into()),
                    ..UserPatch::default()
                },
            )
            .await
            .map(drop),
        env.users.delete(&acme, ann.id).await,
    ] {
        assert!(matches!(result, Err(DataError::NotFound)), "{result:?}");
    }
    // Nor may it create users elsewhere, make operators or move users.
    let elsewhere = env
        .users
        .create(
            &acme,
            NewUser {
                tenant: Some("default".into()),
                ..new_user("x@example.com")
            },
        )
        .await;
    assert!(
        matches!(elsewhere, Err(DataError::Forbidden(_))),
        "{elsewhere:?}"
    );
    let operator_made = env
        .users
        .update(
            &acme,
            acme_member.id,
            UserPatch {
                role: Some(UserRole::Operator),
                ..UserPatch::default()
            },
        )
        .await;
    assert!(matches!(operator_made, Err(DataError::Forbidden(_))));
    let moved = env
        .users
        .update(
            &acme,
            acme_member.id,
            UserPatch {
                tenant: Some("default".into()),
                ..UserPatch::default()
            },
        )
        .await;
    assert!(matches!(moved, Err(DataError::Forbidden(_))));
    // What acme's admin does is acme's: its events carry the tenant.
    env.users.get(&acme, acme_member.id).await.unwrap();
    let events = env.events.take().await;
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event.tenant_id.as_deref(), Some("acme"), "{event:?}");
    }
    // The operator moves a user, recorded as a change of rights.
    env.users
        .update(
            &operator,
            acme_member.id,
            UserPatch {
                tenant: Some("globex".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    let events = env.events.take().await;
    assert_eq!(events[0].event_name.as_deref(), Some("auth.rights_changed"));
    assert_eq!(
        changes(&events[0]),
        json!({"tenant": {"prev": "acme", "next": "globex"}})
    );
}
