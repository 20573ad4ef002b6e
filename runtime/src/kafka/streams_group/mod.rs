//! Group membership over the Streams rebalance protocol (KIP-1071,
//! `group.protocol=streams`).
//!
//! Why: with the classic protocol librdkafka's eager `range` assignor decides
//! who owns what, and every rebalance revokes every task of every member.
//! With KIP-1071 the broker's group coordinator assigns *tasks* (active,
//! standby and warm-up) from the topology the member sends when it joins,
//! moves only the tasks that must move, and waits until a task's old owner
//! has released it before giving it to the new one. The coordinator also
//! checks co-partitioning and hands out the endpoint map for interactive
//! queries.
//!
//! librdkafka does not speak this protocol, so the member does, on its own
//! connection to the coordinator (`connection.rs`, secured like the rest of
//! the application by `security.rs`), from its own heartbeat thread
//! (`member.rs`). The stream thread's consumer then `assign`s the partitions
//! of the tasks it is given; offsets still commit inside each task's
//! transaction. Fencing stays where it was: a task's `transactional.id` is
//! stable, so the new owner's `init_transactions` fences the old one.
//!
//! Files: `codec.rs` (wire primitives), `messages.rs` (the requests and
//! responses), `connection.rs`, `security.rs`, `topology_info.rs` (our
//! topology as the broker wants it), `member.rs` (the heartbeat loop and
//! what the stream thread sees of it).

mod codec;
mod connection;
mod member;
mod messages;
mod security;
mod topology_info;

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) use codec::WireError;
pub(crate) use member::{Member, MemberConfig, MemberEvent, Tasks, random_id};
pub(crate) use messages::{Endpoint, EndpointPartitions};

/// The coordinator's latest endpoint map (which `application.server`
/// materializes which partitions), written by the members and read by
/// interactive queries to route a key to its owner. `None` until the first
/// heartbeat that carries one.
pub(crate) type EndpointMap = std::sync::Arc<std::sync::Mutex<Option<Vec<EndpointPartitions>>>>;

/// The `host:port` whose active tasks hold `partition` of one of `topics`.
pub(crate) fn endpoint_owning(
    map: &[EndpointPartitions],
    topics: &[String],
    partition: i32,
) -> Option<String> {
    map.iter()
        .find(|e| {
            e.active
                .iter()
                .any(|(t, ps)| topics.contains(t) && ps.contains(&partition))
        })
        .map(|e| format!("{}:{}", e.endpoint.host, e.endpoint.port))
}
pub(crate) use security::Security;
pub(crate) use topology_info::topology_info;

/// Connects to the group's coordinator as a member would (bootstrap,
/// security, `ApiVersions`, `FindCoordinator`, then the coordinator itself)
/// and returns its address. Start-up runs it so that a broker without the
/// protocol, bad credentials or an untrusted certificate stop the
/// application at once, with the fix in the message.
pub(crate) fn check_coordinator(
    bootstrap: &str,
    settings: &BTreeMap<String, String>,
    group: &str,
    timeout: Duration,
) -> GroupResult<String> {
    let security = Security::from_settings(settings)?;
    let deadline = std::time::Instant::now() + timeout;
    let per_call = timeout.min(Duration::from_secs(10));
    loop {
        match connection::connect_coordinator(
            bootstrap,
            &security,
            "kstreams-check",
            per_call,
            group,
        ) {
            Ok(c) => return Ok(c.addr),
            Err(e) if !e.is_retriable() || std::time::Instant::now() >= deadline => return Err(e),
            // E.g. COORDINATOR_NOT_AVAILABLE while the offsets topic is created.
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Sets group-level configs (e.g. `streams.num.standby.replicas`) with
/// `IncrementalAlterConfigs` through the first bootstrap server that
/// answers; the broker checks them against its bounds
/// (`group.streams.max.standby.replicas`, ...).
pub(crate) fn set_group_configs(
    bootstrap: &str,
    settings: &BTreeMap<String, String>,
    group: &str,
    configs: &[(String, String)],
    timeout: Duration,
) -> GroupResult<()> {
    let security = Security::from_settings(settings)?;
    let mut last = GroupError::Io("no bootstrap server".into());
    for addr in connection::bootstrap_addrs(bootstrap)? {
        let r = connection::Connection::open(&addr, &security, "kstreams-config", timeout)
            .and_then(|mut c| {
                c.call(messages::INCREMENTAL_ALTER_CONFIGS, 1, true, true, |w| {
                    messages::alter_group_configs_request(w, group, configs)
                })
            });
        match r {
            Ok(body) => {
                let (code, message) =
                    messages::alter_configs_response(&mut codec::Reader::new(&body))?;
                if code != messages::code::NONE {
                    return Err(GroupError::broker("IncrementalAlterConfigs", code, message));
                }
                return Ok(());
            }
            Err(e) if !e.is_retriable() => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What went wrong talking to the group coordinator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GroupError {
    /// The network: retried until `task.timeout.ms`.
    #[error("{0}")]
    Io(String),
    /// A frame that could not be decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The broker answered an error code.
    #[error("{api}: {name} ({code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        api: &'static str,
        code: i16,
        name: &'static str,
        message: Option<String>,
    },
    /// A setting the member cannot use.
    #[error("{0}")]
    Config(String),
    /// Something the broker or this build lacks.
    #[error("{0}")]
    Unsupported(String),
    /// Authentication or TLS failed: no retry will fix it.
    #[error("{0}")]
    Auth(String),
}

impl GroupError {
    /// Whether a later attempt may succeed (network, coordinator moving or
    /// loading).
    pub(crate) fn is_retriable(&self) -> bool {
        match self {
            GroupError::Io(_) | GroupError::Wire(_) => true,
            GroupError::Broker { code, .. } => matches!(
                *code,
                messages::code::COORDINATOR_LOAD_IN_PROGRESS
                    | messages::code::COORDINATOR_NOT_AVAILABLE
                    | messages::code::NOT_COORDINATOR
                    | messages::code::REQUEST_TIMED_OUT
                    | messages::code::NETWORK_EXCEPTION
            ),
            GroupError::Config(_) | GroupError::Unsupported(_) | GroupError::Auth(_) => false,
        }
    }

    pub(crate) fn broker(api: &'static str, code: i16, message: Option<String>) -> GroupError {
        GroupError::Broker {
            api,
            code,
            name: messages::error_name(code),
            message,
        }
    }
}

pub(crate) type GroupResult<T> = std::result::Result<T, GroupError>;
