//! JetStream API errors: nats-server's HTTP-like `code`, its `err_code`
//! and description, as clients match on them.

use serde::Serialize;

/// One API error (`"error": {...}` in a response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// nats-server's error code (10xxx).
    pub err_code: u32,
    /// Human text.
    pub description: String,
}

macro_rules! api_errors {
    ($($name:ident => $code:expr, $err:expr, $text:expr;)*) => {
        impl ApiError {
            $(
                #[doc = $text]
                pub fn $name() -> Self {
                    ApiError { code: $code, err_code: $err, description: $text.to_owned() }
                }
            )*
        }
    };
}

api_errors! {
    bad_request => 400, 10003, "bad request";
    mirror_with_first_seq => 400, 10143, "stream mirrors can not have first sequence configured";
    mirror_with_subjects => 400, 10034, "stream mirrors can not contain subjects";
    mirror_with_sources => 400, 10031, "stream mirrors can not also contain other sources";
    mirror_with_counters => 400, 10173, "stream mirrors can not also calculate counters";
    mirror_with_atomic => 400, 10198, "stream mirrors can not also use atomic publishing";
    mirror_with_schedules => 400, 10186, "stream mirrors can not also schedule messages";
    mirror_multiple_filters => 400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter";
    mirror_overlapping_filters => 400, 10152, "mirror subject filters can not overlap";
    mirror_invalid_name => 400, 10142, "mirrored stream name is invalid";
    mirror_max_msg_size => 400, 10030, "stream mirror must have max message size >= source";
    mirror_not_updatable => 400, 10055, "stream mirror configuration can not be updated";
    source_with_schedules => 400, 10187, "stream source can not also schedule messages";
    source_invalid_name => 400, 10141, "sourced stream name is invalid";
    source_duplicate => 400, 10140, "duplicate source configuration detected";
    source_multiple_filters => 400, 10144, "source with multiple subject transforms cannot also have a single subject filter";
    source_overlapping_filters => 400, 10147, "source filters can not overlap";
    source_max_msg_size => 400, 10046, "stream source must have max message size >= target";
    stream_not_found => 404, 10059, "stream not found";
    consumer_not_found => 404, 10014, "consumer not found";
    no_message_found => 404, 10037, "no message found";
    stream_name_exist => 400, 10058, "stream name already in use with a different configuration";
    subjects_overlap => 400, 10065, "subjects overlap with an existing stream";
    expected_stream_mismatch => 400, 10060, "expected stream does not match";
    consumer_already_exists => 400, 10148, "consumer already exists";
    consumer_does_not_exist => 400, 10149, "consumer does not exist";
    consumer_name_exist => 400, 10013, "consumer name already in use";
    message_too_large => 400, 10054, "message size exceeds maximum allowed";
    header_too_large => 400, 10097, "header size exceeds maximum allowed of 64k";
    not_enabled => 503, 10076, "JetStream not enabled";
    not_enabled_for_account => 503, 10039, "JetStream not enabled for account";
    stream_mismatch => 400, 10056, "stream name in subject does not match request";
    max_streams => 400, 10027, "maximum number of streams reached";
    max_consumers => 400, 10026, "maximum consumers limit reached";
    replicas_not_supported => 500, 10074, "replicas > 1 not supported in non-clustered mode";
    storage_exceeded => 500, 10047, "insufficient storage resources available";
    memory_exceeded => 500, 10028, "insufficient memory resources available";
    account_resources_exceeded => 400, 10002, "resource limits exceeded for account";
    insufficient_resources => 503, 10023, "insufficient resources";
    stream_max_bytes_required => 400, 10113, "account requires a stream config to have max bytes set";
    stream_max_stream_bytes_exceeded => 400, 10122, "stream max bytes exceeds account limit max stream bytes";
    stream_sealed => 400, 10109, "invalid operation on sealed stream";
    consumer_config_required => 400, 10078, "consumer config required";
    deliver_to_wildcards => 400, 10079, "consumer deliver subject has wildcards";
    push_max_waiting => 400, 10080, "consumer in push mode can not set max waiting";
    max_pending_ack_policy_required => 400, 10082, "consumer requires ack policy for max ack pending";
    small_heartbeat => 400, 10083, "consumer idle heartbeat needs to be >= 100ms";
    pull_requires_ack => 400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream";
    hb_requires_push => 400, 10088, "consumer idle heartbeat requires a push based consumer";
    fc_requires_push => 400, 10089, "consumer flow control requires a push based consumer";
    filter_not_subset => 400, 10093, "consumer filter subject is not a valid subset of the interest subjects";
    wq_requires_explicit_ack => 400, 10098, "workqueue stream requires explicit ack";
    wq_multiple_unfiltered => 400, 10099, "multiple non-filtered consumers not allowed on workqueue stream";
    wq_not_unique => 400, 10100, "filtered consumer not unique on workqueue stream";
    wq_not_deliver_all => 400, 10101, "consumer must be deliver all on workqueue stream";
    bad_durable_name => 400, 10103, "durable name can not contain '.', '*', '>'";
    fc_needs_heartbeats => 400, 10108, "consumer with flow control also needs heartbeats";
    deliver_cycle => 400, 10081, "consumer deliver subject forms a cycle";
    invalid_deliver_subject => 400, 10112, "invalid push consumer deliver subject";
    max_deliver_backoff => 400, 10116, "max deliver is required to be > length of backoff values";
    consumer_name_path_separators => 400, 10127, "Consumer name can not contain path separators";
    stream_name_path_separators => 400, 10128, "Stream name can not contain path separators";
    filter_subject_mismatch => 400, 10131, "Consumer create request did not match filtered subject from create subject";
    durable_name_mismatch => 400, 10132, "Consumer Durable and Name have to be equal if both are provided";
    replicas_negative => 400, 10133, "replicas count cannot be negative";
    duplicate_filter_subjects => 400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified";
    multiple_filters_not_allowed => 400, 10137, "consumer with multiple subject filters cannot use subject based API";
    overlapping_filters => 400, 10138, "consumer subject filters cannot overlap";
    empty_filter => 400, 10139, "consumer filter in FilterSubjects cannot be empty";
    ephemeral_with_durable => 400, 10020, "consumer expected to be ephemeral but a durable name was set in request";
    durable_name_not_in_subject => 400, 10016, "consumer expected to be durable but no durable name set in subject";
    durable_name_not_match_subject => 400, 10017, "consumer name in subject does not match durable name in request";
    durable_name_not_set => 400, 10018, "consumer expected to be durable but a durable name was not set";
    msg_ttl_invalid => 400, 10165, "invalid per-message TTL";
    msg_ttl_disabled => 400, 10166, "per-message TTL is disabled";
    msg_incr_disabled => 400, 10168, "message counters is disabled";
    msg_incr_missing => 400, 10169, "message counter increment is missing";
    msg_incr_payload => 400, 10170, "message counter has payload";
    msg_incr_invalid => 400, 10171, "message counter increment is invalid";
    msg_counter_broken => 400, 10172, "message counter is broken";
    required_api_level => 412, 10185, "JetStream minimum api level required";
    schedules_disabled => 400, 10188, "message schedules is disabled";
    schedules_pattern_invalid => 400, 10189, "message schedules pattern is invalid";
    schedules_target_invalid => 400, 10190, "message schedules target is invalid";
    schedules_ttl_invalid => 400, 10191, "message schedules invalid per-message TTL";
    schedules_rollup_invalid => 400, 10192, "message schedules invalid rollup";
    schedules_source_invalid => 400, 10203, "message schedules source is invalid";
    schedules_time_zone_invalid => 400, 10223, "message schedules time zone is invalid";
    expected_last_subject_seq_missing => 400, 10193, "missing sequence for expected last sequence per subject";
    schedules_scheduler_invalid => 400, 10212, "message schedules invalid scheduler";
    not_empty_request => 400, 10038, "expected an empty request payload";
    wrong_last_sequence_in_batch => 400, 10164, "wrong last sequence";
    atomic_disabled => 400, 10174, "atomic publish is disabled";
    batch_sequence_missing => 400, 10175, "atomic publish sequence is missing";
    batch_incomplete => 400, 10176, "atomic publish batch is incomplete";
    batch_id_invalid => 400, 10179, "atomic publish batch ID is invalid";
    batch_too_large => 400, 10199, "atomic publish batch is too large: 1000";
    batch_commit_invalid => 400, 10200, "atomic publish batch commit is invalid";
    batch_duplicate_msg_id => 400, 10201, "atomic publish batch contains duplicate message id";
    batch_too_many_inflight => 429, 10210, "atomic publish too many inflight";
    fast_batch_disabled => 400, 10205, "batch publish is disabled";
    fast_batch_invalid_pattern => 400, 10206, "batch publish pattern is invalid";
    fast_batch_id_invalid => 400, 10207, "batch publish ID is invalid";
    fast_batch_unknown => 400, 10208, "batch publish ID unknown";
    fast_batch_too_many_inflight => 429, 10211, "batch publish too many inflight";
    priority_policy_without_group => 400, 10159, "Setting PriorityPolicy requires at least one PriorityGroup to be set";
    invalid_priority_group => 400, 10160, "Provided priority group does not exist for this consumer";
    empty_group_name => 400, 10161, "Group name cannot be an empty string";
    invalid_group_name => 400, 10162, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters";
    push_with_priority_group => 400, 10178, "priority groups can not be used with push consumers";
    priority_group_with_policy_none => 400, 10196, "consumer can not have priority groups when policy is none";
    pinned_ttl_without_priority_policy => 400, 10197, "PinnedTTL cannot be set when PriorityPolicy is none";
}

impl ApiError {
    /// `invalid JSON: <detail>` (10025).
    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        ApiError {
            code: 400,
            err_code: 10025,
            description: format!("invalid JSON: {detail}"),
        }
    }

    /// A consumer's `inactive_threshold` past the stream's
    /// `consumer_limits` (10153); `limit` in Go's duration format.
    pub fn inactive_threshold_exceeds_limit(limit: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10153,
            description: format!("consumer inactive threshold exceeds system limit of {limit}"),
        }
    }

    /// A consumer's `max_ack_pending` past the stream's or the account's
    /// limit (10121).
    pub fn max_ack_pending_exceeds_limit(limit: i64) -> Self {
        ApiError {
            code: 400,
            err_code: 10121,
            description: format!("consumer max ack pending exceeds system limit of {limit}"),
        }
    }

    /// `wrong last sequence: <seq>` (10071).
    pub fn wrong_last_sequence(seq: u64) -> Self {
        ApiError {
            code: 400,
            err_code: 10071,
            description: format!("wrong last sequence: {seq}"),
        }
    }

    /// `wrong last msg ID: <id>` (10070).
    pub fn wrong_last_msg_id(id: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10070,
            description: format!("wrong last msg ID: {id}"),
        }
    }

    /// A stream `subject_transform` source that is not a subject filter
    /// (10155).
    pub fn transform_invalid_source(detail: impl std::fmt::Display) -> Self {
        ApiError {
            code: 400,
            err_code: 10155,
            description: format!("stream transform source: {detail}"),
        }
    }

    /// A stream `subject_transform` destination that cannot be used
    /// (10156).
    pub fn transform_invalid_destination(detail: impl std::fmt::Display) -> Self {
        ApiError {
            code: 400,
            err_code: 10156,
            description: format!("stream transform: {detail}"),
        }
    }

    /// `mirror transform source: invalid subject <filter>` (10151).
    pub fn mirror_invalid_filter(filter: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10151,
            description: format!("mirror transform source: invalid subject {filter}"),
        }
    }

    /// `mirror transform: <why>` (10154).
    pub fn mirror_invalid_transform(e: impl std::fmt::Display) -> Self {
        ApiError {
            code: 400,
            err_code: 10154,
            description: format!("mirror transform: {e}"),
        }
    }

    /// `source transform source: invalid subject <filter>` (10145).
    pub fn source_invalid_filter(filter: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10145,
            description: format!("source transform source: invalid subject {filter}"),
        }
    }

    /// `source transform: <why>` (10146).
    pub fn source_invalid_transform(e: impl std::fmt::Display) -> Self {
        ApiError {
            code: 400,
            err_code: 10146,
            description: format!("source transform: {e}"),
        }
    }

    /// An external delivery prefix with wildcards (10024).
    pub fn external_deliver_invalid(prefix: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10024,
            description: format!(
                "stream external delivery prefix {prefix} must not contain wildcards"
            ),
        }
    }

    /// An external API prefix overlapping `$JS.API` (10021).
    pub fn external_api_overlap(prefix: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10021,
            description: format!(
                "stream external api prefix {prefix} must not overlap with $JS.API"
            ),
        }
    }

    /// A stream creation failure (10049).
    pub fn stream_create(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10049,
            description: text.into(),
        }
    }

    /// A stream configuration problem (10052).
    pub fn invalid_config(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10052,
            description: text.into(),
        }
    }

    /// A header an atomic batch may not use (10177).
    pub fn batch_unsupported_header(header: &str) -> Self {
        ApiError {
            code: 400,
            err_code: 10177,
            description: format!("atomic publish unsupported header used: {header}"),
        }
    }

    /// Storing failed (10077), e.g. limits with discard new, or a poisoned store.
    pub fn store_failed(text: impl Into<String>) -> Self {
        ApiError {
            code: 503,
            err_code: 10077,
            description: text.into(),
        }
    }

    /// A stream update that is not allowed (10069).
    pub fn update_failed(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10069,
            description: text.into(),
        }
    }

    /// A consumer creation problem (10012).
    pub fn consumer_create(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10012,
            description: text.into(),
        }
    }

    /// A deliver policy problem (10094).
    pub fn invalid_policy(text: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            err_code: 10094,
            description: text.into(),
        }
    }

    /// A read of a stored message failed: a generic stream failure (10051),
    /// or, for a read that would have waited on the disk on a thread that
    /// must not (see `store::nowait`), [`ApiError::read_would_block`].
    pub fn stream_read(e: &super::store::StoreError) -> Self {
        if e.would_block() {
            return ApiError::read_would_block();
        }
        ApiError::stream_general(e.to_string())
    }

    /// Not an answer: the request read a message that is not in memory on
    /// a thread that must not wait on the disk. The API layer answers the
    /// request again where reads may wait; a client never sees this.
    pub fn read_would_block() -> Self {
        ApiError {
            code: 0,
            err_code: 0,
            description: "read would wait on the disk".to_owned(),
        }
    }

    /// See [`ApiError::read_would_block`].
    pub fn is_read_would_block(&self) -> bool {
        self.code == 0 && self.err_code == 0
    }

    /// Generic stream failure (10051).
    pub fn stream_general(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10051,
            description: text.into(),
        }
    }

    /// Message delete failure (10057).
    pub fn msg_delete_failed(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10057,
            description: text.into(),
        }
    }

    /// Purge failure (10110).
    pub fn purge_failed(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10110,
            description: text.into(),
        }
    }

    /// Rollup failure (10111).
    pub fn rollup_failed(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10111,
            description: text.into(),
        }
    }

    /// Stream deletion failure (10050).
    pub fn delete_failed(text: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            err_code: 10050,
            description: text.into(),
        }
    }

    /// `sequence <n> not found`? No: nats-server answers a missing sequence
    /// with 10037; this is the consumer-name length error (10102).
    pub fn consumer_name_too_long(max: usize) -> Self {
        ApiError {
            code: 400,
            err_code: 10102,
            description: format!("consumer name is too long, maximum allowed is {max}"),
        }
    }
}
