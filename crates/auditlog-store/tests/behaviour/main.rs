//! One behavioural suite for every store backend. Each backend contributes a way to
//! open a fresh, private store; every scenario (storing in `ingest`, reading in
//! `queries`, the Merkle tree in `tree`, the log streams' rows in `sinks`,
//! pruning, policies and holds in `retention`) runs against each of them. What only a
//! server store shared by several auditors does (`settled`) runs against those, as
//! do the plans their planners choose for a tenant's pages (`plans`).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashSet;
use std::sync::Arc;

use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{ActivityCount, AuditStore, EventQuery, ObjectKey, Order, ProducerProgress};
use serde_json::json;

mod ingest;
mod plans;
mod queries;
mod retention;
mod settled;
mod sinks;
mod subject_keys;
mod tree;

use ingest::*;
use plans::*;
use queries::*;
use retention::*;
use settled::*;
use sinks::*;
use subject_keys::*;
use tree::*;

/// A fresh store of one backend, and the private database behind it (removed when
/// this is dropped, after the store).
struct Fresh {
    store: Arc<dyn AuditStore>,
    db: TestDatabase,
}

impl Fresh {
    async fn open(db: TestDatabase) -> Fresh {
        Fresh {
            store: auditlog_store::open(db.url()).await.unwrap(),
            db,
        }
    }

    fn url(&self) -> &str {
        self.db.url()
    }
}

async fn sqlite() -> Fresh {
    Fresh::open(testing::fresh_sqlite_url()).await
}

async fn postgres() -> Fresh {
    Fresh::open(testing::fresh_postgres_url().await).await
}

async fn mysql() -> Fresh {
    Fresh::open(testing::fresh_mysql_url().await).await
}

/// Runs every scenario against every backend: one module per backend, one test per
/// scenario in each, so a failure names both.
macro_rules! for_every_store {
    ($($scenario:ident),* $(,)?) => {
        for_every_store!(@backend sqlite_store, sqlite, $($scenario),*);
        for_every_store!(@backend postgres_store, postgres, $($scenario),*);
        for_every_store!(@backend mysql_store, mysql, $($scenario),*);
    };
    (@backend $module:ident, $fresh:ident, $($scenario:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::$fresh().await).await;
                }
            )*
        }
    };
}

for_every_store!(
    a_batch_is_stored_and_read_back_exactly,
    redelivered_events_are_stored_once,
    actor_queries_are_newest_first_and_match_numeric_and_text_ids,
    target_queries_see_only_that_target,
    filters_by_action_and_time_combine,
    pages_cover_every_event_once_in_order_even_with_equal_timestamps,
    ties_follow_creation_order_not_arrival_order,
    stored_ids_names_exactly_the_stored_events,
    involving_matches_actor_or_target,
    events_survive_reopening_the_store,
    duplicate_ids_inside_one_batch_are_stored_once,
    ten_thousand_events_in_one_batch_page_back_in_batch_order,
    matching_is_exact_and_case_sensitive,
    bodies_round_trip_byte_for_byte,
    the_store_answers_a_ping,
    large_events_are_split_under_the_servers_size_limits,
    concurrent_overlapping_batches_store_each_event_once,
    producers_report_what_is_stored_and_what_is_missing,
    a_missing_start_of_a_sequence_is_a_gap,
    only_the_first_hundred_gaps_are_listed_but_all_are_counted,
    a_store_without_numbered_events_reports_no_producers,
    a_producer_id_stays_bound_to_its_first_principal,
    stored_events_carry_their_receipt_time,
    event_names_filter_with_any_of_several,
    oldest_first_pages_cover_every_event_once_in_order,
    newest_first_pages_stay_correct_while_newer_events_arrive,
    oldest_first_pages_stay_correct_while_newer_events_arrive,
    a_cursor_continues_in_the_querys_order,
    count_is_the_number_of_matching_events_whatever_the_page,
    get_finds_one_event_by_id,
    stored_after_gives_later_matching_events_in_commit_order,
    activity_counts_each_action_per_bucket,
    sealing_is_idempotent_and_continues_where_it_stopped,
    roots_and_proofs_match_an_independent_computation_across_tiles,
    leaves_and_rows_read_back_as_stored,
    concurrent_sealers_produce_one_tree,
    a_row_inserted_below_the_last_sealed_seq_is_never_sealed,
    checkpoints_keep_the_first_of_each_size_and_list_by_size,
    the_migration_record_is_kept_once,
    the_earlier_chain_is_read_as_stored,
    a_subjects_first_key_is_kept_and_later_candidates_are_ignored,
    an_erased_key_is_gone_and_erasing_again_changes_nothing,
    thousands_of_subjects_in_one_call_are_kept_and_read_back,
    sinks_are_created_once_updated_and_deleted,
    one_holder_at_a_time_leases_a_sink_and_only_it_moves_the_cursor,
    pruning_removes_expired_rows_and_keeps_their_leaves,
    pruning_waits_for_every_sink_to_deliver,
    concurrent_prunes_count_each_row_once,
    retention_policies_and_legal_holds_are_kept_as_set,
);

/// Scenarios of server stores that several auditor processes share: the sealer
/// role on each, PostgreSQL's settled `seq` (its writers do not take turns), and
/// the indexes their planners choose for a tenant's pages.
mod server_stores {
    #[tokio::test]
    async fn postgres_one_store_at_a_time_holds_the_sealer_role() {
        super::one_store_at_a_time_holds_the_sealer_role(super::postgres().await).await;
    }

    #[tokio::test]
    async fn mysql_one_store_at_a_time_holds_the_sealer_role() {
        super::one_store_at_a_time_holds_the_sealer_role(super::mysql().await).await;
    }

    #[tokio::test]
    async fn postgres_a_write_in_flight_below_the_highest_seq_holds_sealing_and_tails_back() {
        super::a_write_in_flight_below_the_highest_seq_holds_sealing_and_tails_back(
            super::postgres().await,
        )
        .await;
    }

    #[tokio::test]
    async fn postgres_sealing_goes_on_past_gaps_in_seq_wider_than_its_window() {
        super::sealing_goes_on_past_gaps_in_seq_wider_than_its_window(super::postgres().await)
            .await;
    }

    #[tokio::test]
    async fn postgres_sealing_a_large_backlog_analyzes_the_tables_it_grew() {
        super::sealing_a_large_backlog_analyzes_the_tables_it_grew(super::postgres().await).await;
    }

    #[tokio::test]
    async fn postgres_the_first_sealing_analyzes_a_bulk_loaded_database() {
        super::the_first_sealing_analyzes_a_bulk_loaded_database(super::postgres().await).await;
    }

    #[tokio::test]
    async fn postgres_a_small_tenants_page_reads_the_tenant_index() {
        super::a_small_tenants_page_reads_the_tenant_index_on_postgres(super::postgres().await)
            .await;
    }

    #[tokio::test]
    async fn mysql_a_small_tenants_page_reads_the_tenant_index() {
        super::a_small_tenants_page_reads_the_tenant_index_on_mysql(super::mysql().await).await;
    }

    #[tokio::test]
    async fn postgres_an_aborted_write_leaves_a_gap_that_holds_nothing_back() {
        super::an_aborted_write_leaves_a_gap_that_holds_nothing_back(super::postgres().await).await;
    }
}

fn kind(name: &str) -> ObjectType {
    ObjectType::parse("actorType", name).unwrap()
}

fn event(action: Action, actor: i64, target_type: &str, target: ObjectId, ts: i64) -> DataEvent {
    let mut e = DataEvent::new(
        action,
        ObjectRef::new(kind("users"), actor),
        ObjectRef::new(kind(target_type), target),
        ts,
    );
    if action == Action::Changed {
        let mut changes = Changes::new();
        changes.insert("name".into(), Change::new(json!("a"), json!("b")));
        e.changes = Some(changes);
    }
    e
}

/// A `viewed` event numbered `seq` by `producer`.
fn numbered(producer: &str, seq: u64) -> DataEvent {
    let mut e = event(Action::Viewed, 1, "users", 1.into(), seq as i64);
    e.producer_id = Some(producer.into());
    e.producer_seq = Some(seq);
    e
}

fn progress(
    producer_id: &str,
    events: u64,
    last_seq: u64,
    missing: u64,
    gaps: &[(u64, u64)],
) -> ProducerProgress {
    ProducerProgress {
        producer_id: producer_id.into(),
        events,
        last_seq,
        missing,
        gaps: gaps.to_vec(),
    }
}

fn key(object_type: &str, id: &str) -> ObjectKey {
    ObjectKey {
        object_type: kind(object_type),
        id: id.into(),
    }
}

fn by_actor(id: &str) -> EventQuery {
    EventQuery {
        actor: Some(key("users", id)),
        ..EventQuery::default()
    }
}
