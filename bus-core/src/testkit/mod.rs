//! The contract suite: one set of scenarios every backend runs against fresh
//! instances of itself (feature `testkit`).
//!
//! A backend provides a [`Harness`] and expands [`contract_suite!`](crate::contract_suite) (and, when
//! it persists, [`persistence_suite!`](crate::persistence_suite)) in one of its integration tests. Each
//! scenario becomes its own `#[tokio::test]`, named after what it proves, so a
//! failure reads as "backend X: scenario Y".
//!
//! Timing: scenarios that need redelivery use [`Timing::ack_wait`] from the
//! harness, and every wait for something that must happen is bounded by
//! [`Timing::patience`] (a generous upper bound, never a speed goal). Elapsed
//! times are checked against lower bounds, and where a delay is promised
//! (backoff) against that delay plus [`Timing::slack`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Bus, StreamSettings};

mod event_store;
pub mod scenarios;
mod support;

pub use support::*;

/// Durations a backend needs for timing-dependent scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Ack wait used by redelivery scenarios (short, but long enough that a
    /// loaded machine does not redeliver an event that is being handled).
    pub ack_wait: Duration,
    /// Upper bound on waiting for anything that must happen.
    pub patience: Duration,
    /// How long "nothing more arrives" is watched for.
    pub quiet: Duration,
    /// How much later than promised a timed redelivery may come on a loaded
    /// machine; upper bounds on elapsed time allow this much.
    pub slack: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ack_wait: Duration::from_millis(400),
            patience: Duration::from_secs(15),
            quiet: Duration::from_millis(300),
            slack: Duration::from_millis(500),
        }
    }
}

/// How the suite gets bus instances of one backend.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A fresh, empty bus (default subject layout) with these stream settings.
    /// Each call is isolated from every earlier one.
    async fn open(&self, stream: StreamSettings) -> Arc<dyn Bus>;

    /// The bus most recently opened, shut down in an orderly way and opened
    /// again on the same storage (a process restart; crash recovery has its
    /// own tests per backend). Only persistent backends implement this;
    /// the default panics, and [`persistence_suite!`](crate::persistence_suite) is only for backends that do.
    async fn reopen(&self) -> Arc<dyn Bus> {
        panic!("this backend does not persist; do not run persistence_suite! on it")
    }

    /// Timing for this backend.
    fn timing(&self) -> Timing {
        Timing::default()
    }
}

/// Expands to one `#[tokio::test]` per contract scenario, each building its
/// harness with `$make`. The calling crate needs `tokio` (with `macros` and
/// `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::__contract_tests!($make;
            roundtrip_preserves_exact_bytes_and_metadata,
            positions_increase_in_publish_order,
            filters_follow_nats_wildcard_semantics,
            consumer_with_several_filters_gets_their_union,
            live_subscription_sees_only_new_matching_events,
            live_subscriptions_fan_out_to_every_subscriber,
            per_aggregate_order_is_kept_across_interleaved_publishers,
            batch_is_stored_in_order_with_one_receipt_each,
            failed_batch_validation_stores_nothing,
            fan_out_every_durable_consumer_sees_every_event,
            shared_consumer_splits_work_without_duplicates,
            durable_consumer_resumes_after_its_handle_is_dropped,
            consumer_starts_at_beginning,
            consumer_starts_at_position,
            consumer_starts_at_time,
            consumer_starting_new_sees_only_later_events,
            start_position_is_ignored_when_resuming,
            nak_redelivers_with_increasing_attempt,
            nak_with_delay_holds_the_event_back,
            unacked_event_is_redelivered_after_ack_wait,
            in_progress_extends_the_ack_deadline,
            naks_up_to_max_deliver_dead_letter_with_reason,
            ack_timeouts_up_to_max_deliver_dead_letter,
            term_dead_letters_at_once_and_never_redelivers,
            poison_event_does_not_block_later_events,
            backoff_spaces_redeliveries,
            single_in_flight_keeps_order_under_redelivery,
            every_event_is_processed_at_least_once_despite_naks,
            ack_is_idempotent,
            ack_all_acknowledges_exactly_the_deliveries_it_is_given,
            duplicate_event_id_inside_window_is_stored_once,
            duplicate_event_id_after_window_is_stored_again,
            replay_reads_to_the_head_seen_at_start_and_ends,
            replay_from_position_and_time,
            replay_of_empty_stream_ends_at_once,
            concurrent_publishers_lose_and_duplicate_nothing,
            bad_input_is_a_clear_error_and_stores_nothing,
            payload_over_the_limit_is_rejected,
            consumer_rebind_with_other_filters_conflicts,
            consumer_info_tracks_pending_and_ack_floor,
            deleted_consumer_starts_over_and_keeps_dead_letters,
            max_msgs_discard_old_drops_the_oldest,
            max_msgs_discard_new_refuses_with_limit_reached,
            max_age_expires_old_events,
            typed_payload_roundtrips_through_the_bus,
            live_roundtrip_preserves_exact_bytes_and_metadata,
            live_filters_follow_nats_wildcard_semantics,
            bad_publish_input_is_a_clear_error,
            redrive_sends_a_dead_letter_back_only_to_its_consumer,
            repeated_redrive_sends_nothing_twice,
            redriven_event_that_fails_again_is_dead_lettered_again,
            redrive_to_an_unknown_consumer_is_not_found,
            append_numbers_events_and_reports_version_and_positions,
            concurrent_appends_at_one_version_exactly_one_wins_of_2,
            concurrent_appends_at_one_version_exactly_one_wins_of_8,
            concurrent_appends_at_one_version_exactly_one_wins_of_32,
            append_failing_its_check_stores_nothing,
            append_retried_after_a_lost_ack_returns_the_first_receipt,
            append_reusing_a_stored_event_id_stores_nothing,
            invalid_appends_are_refused_before_anything_is_stored,
            load_from_a_version_returns_only_later_events,
            load_of_an_unknown_aggregate_is_version_zero,
            appended_events_reach_consumers_and_replays_in_append_order,
            snapshots_keep_the_latest_and_loading_starts_after_it,
        );
    };
}

/// Expands to one `#[tokio::test]` per persistence scenario (events, consumer
/// positions and dedup survive a restart). For backends whose harness
/// implements [`Harness::reopen`].
#[macro_export]
macro_rules! persistence_suite {
    ($make:expr) => {
        $crate::__contract_tests!($make;
            events_survive_a_restart,
            consumer_position_survives_a_restart,
            unacked_events_are_redelivered_after_a_restart,
            acks_confirmed_by_ack_all_survive_a_restart,
            dedup_survives_a_restart,
            redrive_interrupted_by_a_restart_sends_nothing_twice,
            appended_aggregates_survive_a_restart,
        );
    };
}

/// Expands to the live-only scenarios, for a backend without a log (core
/// NATS): publish and live subscribe work, everything needing a log is
/// `Unsupported`.
#[macro_export]
macro_rules! core_contract_suite {
    ($make:expr) => {
        $crate::__contract_tests!($make;
            live_roundtrip_preserves_exact_bytes_and_metadata,
            live_filters_follow_nats_wildcard_semantics,
            live_subscription_sees_only_new_matching_events,
            live_subscriptions_fan_out_to_every_subscriber,
            bad_publish_input_is_a_clear_error,
            persistence_operations_are_unsupported_without_a_log,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                $crate::testkit::scenarios::$name(&harness).await;
            }
        )*
    };
}
