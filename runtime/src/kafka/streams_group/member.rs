//! The member: a heartbeat thread per stream thread, and what the stream
//! thread sees of it ([`Member`]).
//!
//! Why a thread of its own: the coordinator expects a heartbeat every
//! `heartbeat interval` (5 s by default) or it drops the member after the
//! session timeout, and a stream thread can be busy for longer (restoring a
//! store, waiting for a commit). So the heartbeat runs here, and the two
//! threads meet in a mutex:
//! - the heartbeat thread publishes what the coordinator assigned
//!   ([`MemberEvent::Assigned`]), a lost membership ([`MemberEvent::Lost`],
//!   after a fence: every task must be closed without committing) or an error
//!   no retry fixes ([`MemberEvent::Fatal`]);
//! - the stream thread reports what it owns ([`Member::report_owned`]) once it
//!   has applied an assignment, and the next heartbeat (sent at once) tells
//!   the coordinator, which then hands released tasks to their new owners.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::codec::Reader;
use super::connection::{Connection, connect_coordinator};
use super::messages::{
    self, Endpoint, HeartbeatRequest, HeartbeatResponse, TaskIds, TopologyInfo, code,
};
use super::security::Security;
use super::{GroupError, GroupResult};
use crate::TaskId;

/// A member's tasks by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tasks {
    pub active: BTreeSet<TaskId>,
    pub standby: BTreeSet<TaskId>,
    pub warmup: BTreeSet<TaskId>,
}

/// What the stream thread must act on.
#[derive(Debug)]
pub(crate) enum MemberEvent {
    /// The tasks this member should own now.
    Assigned(Tasks),
    /// The coordinator fenced this member: close every task without
    /// committing; the member rejoins by itself.
    Lost(String),
    /// An error no retry fixes.
    Fatal(String),
}

/// How the member joins.
#[derive(Clone, Debug)]
pub(crate) struct MemberConfig {
    pub group_id: String,
    pub bootstrap: String,
    pub security: Security,
    pub client_id: String,
    /// Shared by the members (threads) of one process.
    pub process_id: String,
    pub topology: TopologyInfo,
    pub endpoint: Option<Endpoint>,
    /// Where the endpoint map goes (interactive queries read it).
    pub endpoints: super::EndpointMap,
    pub rebalance_timeout: Duration,
    /// How long the coordinator may be unreachable before the member gives
    /// up (`task.timeout.ms`).
    pub give_up_after: Duration,
    pub request_timeout: Duration,
}

#[derive(Default)]
struct State {
    events: Vec<MemberEvent>,
    owned: Tasks,
    owned_changed: bool,
    closing: bool,
    /// The stream thread closed its tasks and asks to join afresh.
    rejoin: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The stream thread's handle on its member.
pub(crate) struct Member {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A member id: 16 random bytes in hex, as the protocol asks the client to
/// choose one.
pub(crate) fn random_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !filled {
        // No /dev/urandom: the time and process id are unique enough
        // among the members of one group.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b[..8].copy_from_slice(&(t as u64).to_be_bytes());
        b[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn to_wire(tasks: &BTreeSet<TaskId>) -> Vec<TaskIds> {
    let mut v: Vec<TaskIds> = Vec::new();
    for t in tasks {
        let sub = t.subtopology.to_string();
        match v.iter_mut().find(|x| x.subtopology == sub) {
            Some(x) => x.partitions.push(t.partition),
            None => v.push(TaskIds {
                subtopology: sub,
                partitions: vec![t.partition],
            }),
        }
    }
    v
}

fn from_wire(v: &[TaskIds]) -> GroupResult<BTreeSet<TaskId>> {
    let mut out = BTreeSet::new();
    for t in v {
        let subtopology: u32 = t.subtopology.parse().map_err(|_| {
            GroupError::Unsupported(format!(
                "the coordinator assigned sub-topology '{}', which this topology does not have",
                t.subtopology
            ))
        })?;
        for &partition in &t.partitions {
            out.insert(TaskId {
                subtopology,
                partition,
            });
        }
    }
    Ok(out)
}

impl Member {
    /// Starts the heartbeat thread; the first heartbeat joins the group.
    pub fn start(cfg: MemberConfig) -> std::io::Result<Member> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let member_id = random_id();
        let s = shared.clone();
        let id = member_id.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{}-heartbeat", cfg.client_id))
            .spawn(move || Heartbeat::new(cfg, id, s).run())?;
        Ok(Member {
            shared,
            thread: Some(thread),
        })
    }

    /// The events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<MemberEvent> {
        std::mem::take(&mut self.shared.state.lock().unwrap().events)
    }

    /// Tells the coordinator (with the next heartbeat, sent at once) what
    /// the stream thread owns now.
    pub fn report_owned(&self, owned: Tasks) {
        let mut st = self.shared.state.lock().unwrap();
        if st.owned != owned {
            st.owned = owned;
            st.owned_changed = true;
            self.shared.wake.notify_all();
        }
    }

    /// Leaves and joins again with no tasks (after the stream thread closed
    /// them all, e.g. when one was fenced), so the coordinator assigns
    /// afresh.
    pub fn rejoin(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.owned = Tasks::default();
        st.owned_changed = false;
        st.rejoin = true;
        self.shared.wake.notify_all();
    }

    /// Leaves the group (a heartbeat with epoch -1) and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.state.lock().unwrap().closing = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The heartbeat thread's own state.
struct Heartbeat {
    cfg: MemberConfig,
    member_id: String,
    shared: Arc<Shared>,
    conn: Option<Connection>,
    epoch: i32,
    /// The endpoint information epoch last received.
    endpoint_epoch: i32,
    interval: Duration,
    /// The last heartbeat the coordinator answered (or the start).
    last_ok: Instant,
    /// What the coordinator last assigned, kept whole because each list
    /// comes only when it changed.
    assigned: Tasks,
}

impl Heartbeat {
    fn new(cfg: MemberConfig, member_id: String, shared: Arc<Shared>) -> Heartbeat {
        Heartbeat {
            cfg,
            member_id,
            shared,
            conn: None,
            epoch: 0,
            endpoint_epoch: 0,
            interval: Duration::from_millis(500),
            last_ok: Instant::now(),
            assigned: Tasks::default(),
        }
    }

    fn publish(&self, ev: MemberEvent) {
        self.shared.state.lock().unwrap().events.push(ev);
    }

    fn run(mut self) {
        let mut next = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            // Wait for the next heartbeat, a change of the owned tasks, or
            // the end.
            let (owned, closing) = {
                let mut st = self.shared.state.lock().unwrap();
                loop {
                    if st.closing || st.owned_changed || st.rejoin {
                        break;
                    }
                    let now = Instant::now();
                    if now >= next {
                        break;
                    }
                    st = self.shared.wake.wait_timeout(st, next - now).unwrap().0;
                }
                let owned = st.owned_changed.then(|| st.owned.clone());
                st.owned_changed = false;
                if std::mem::take(&mut st.rejoin) {
                    drop(st);
                    self.leave();
                    self.epoch = 0;
                    self.assigned = Tasks::default();
                    next = Instant::now();
                    continue;
                }
                (owned, st.closing)
            };
            if closing {
                self.leave();
                return;
            }
            match self.beat(owned.clone()) {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    next = Instant::now() + self.interval;
                }
                Err(e) => {
                    if let Some(o) = owned {
                        // Send the owned tasks again with the retry.
                        let mut st = self.shared.state.lock().unwrap();
                        if !st.owned_changed {
                            st.owned = o;
                            st.owned_changed = true;
                        }
                    }
                    match e {
                        Beat::Fatal(msg) => {
                            self.publish(MemberEvent::Fatal(msg));
                            return;
                        }
                        Beat::Retry(msg) => {
                            if self.last_ok.elapsed() > self.cfg.give_up_after {
                                self.publish(MemberEvent::Fatal(format!(
                                    "the group coordinator was unreachable for {} s (task.timeout.ms): {msg}",
                                    self.cfg.give_up_after.as_secs()
                                )));
                                return;
                            }
                            tracing::warn!(member = %self.member_id, error = %msg, "heartbeat failed; retrying");
                            next = Instant::now() + backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
        }
    }

    fn connect(&mut self) -> GroupResult<&mut Connection> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let c = connect_coordinator(
                    &self.cfg.bootstrap,
                    &self.cfg.security,
                    &self.cfg.client_id,
                    self.cfg.request_timeout,
                    &self.cfg.group_id,
                )?;
                tracing::debug!(member = %self.member_id, coordinator = %c.addr, "connected to the group coordinator");
                c
            }
        };
        Ok(self.conn.insert(conn))
    }

    fn request(&self, owned: Option<Tasks>) -> HeartbeatRequest {
        let mut req = HeartbeatRequest {
            group_id: self.cfg.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            endpoint_epoch: self.endpoint_epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        if self.epoch == 0 {
            req.rebalance_timeout_ms = self.cfg.rebalance_timeout.as_millis() as i32;
            req.topology = Some(self.cfg.topology.clone());
            req.process_id = Some(self.cfg.process_id.clone());
            req.user_endpoint = self.cfg.endpoint.clone();
            req.active = Some(vec![]);
            req.standby = Some(vec![]);
            req.warmup = Some(vec![]);
        } else if let Some(o) = owned {
            req.active = Some(to_wire(&o.active));
            req.standby = Some(to_wire(&o.standby));
            req.warmup = Some(to_wire(&o.warmup));
        }
        req
    }

    fn beat(&mut self, owned: Option<Tasks>) -> Result<(), Beat> {
        let req = self.request(owned);
        let joining = self.epoch == 0;
        let body = {
            let conn = self.connect().map_err(Beat::from_group)?;
            conn.call(messages::STREAMS_GROUP_HEARTBEAT, 0, true, true, |w| {
                req.encode(w)
            })
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                self.conn = None;
                return Err(Beat::from_group(e));
            }
        };
        let resp = HeartbeatResponse::decode(&mut Reader::new(&body))
            .map_err(|e| Beat::Retry(e.to_string()))?;
        match resp.error {
            code::NONE => {}
            code::NOT_COORDINATOR
            | code::COORDINATOR_NOT_AVAILABLE
            | code::COORDINATOR_LOAD_IN_PROGRESS
            | code::REQUEST_TIMED_OUT
            | code::NETWORK_EXCEPTION => {
                self.conn = None;
                return Err(Beat::Retry(
                    GroupError::broker("StreamsGroupHeartbeat", resp.error, resp.message)
                        .to_string(),
                ));
            }
            code::UNKNOWN_MEMBER_ID | code::FENCED_MEMBER_EPOCH if !joining => {
                let why = GroupError::broker("StreamsGroupHeartbeat", resp.error, resp.message)
                    .to_string();
                tracing::warn!(member = %self.member_id, error = %why, "fenced by the group coordinator; closing all tasks and rejoining");
                self.epoch = 0;
                self.assigned = Tasks::default();
                self.publish(MemberEvent::Lost(why));
                // Rejoin at once, with no tasks.
                return Err(Beat::Retry("rejoining after a fence".into()));
            }
            other => {
                let mut msg =
                    GroupError::broker("StreamsGroupHeartbeat", other, resp.message).to_string();
                if other == code::GROUP_AUTHORIZATION_FAILED {
                    msg.push_str(&format!(
                        ". Grant this principal READ on group '{}' (and DESCRIBE on its topics)",
                        self.cfg.group_id
                    ));
                }
                if other == code::UNSUPPORTED_VERSION {
                    msg.push_str(
                        ". The broker must enable the Streams rebalance protocol (Kafka 4.2 or \
                         newer); or set group.protocol=classic",
                    );
                }
                return Err(Beat::Fatal(msg));
            }
        }
        self.last_ok = Instant::now();
        self.epoch = resp.member_epoch;
        if resp.heartbeat_interval_ms > 0 {
            self.interval = Duration::from_millis(resp.heartbeat_interval_ms as u64);
        }
        for s in resp.status.iter().flatten() {
            match s.code {
                // Missing internal topics: the coordinator creates them.
                3 => {
                    tracing::info!(member = %self.member_id, detail = %s.detail, "the coordinator is creating internal topics")
                }
                1 | 2 | 0 | 4 => {
                    let what = match s.code {
                        0 => "the group runs a newer topology than this instance (STALE_TOPOLOGY)",
                        1 => "source topics are missing (MISSING_SOURCE_TOPICS)",
                        2 => {
                            "topics are not co-partitioned or have the wrong partition count (INCORRECTLY_PARTITIONED_TOPICS)"
                        }
                        _ => {
                            "an instance asked the whole application to shut down (SHUTDOWN_APPLICATION)"
                        }
                    };
                    return Err(Beat::Fatal(format!(
                        "group '{}': {what}: {}",
                        self.cfg.group_id, s.detail
                    )));
                }
                _ => {
                    tracing::info!(member = %self.member_id, code = s.code, detail = %s.detail, "group status")
                }
            }
        }
        let mut changed = false;
        let mut apply =
            |list: &Option<Vec<TaskIds>>, into: &mut BTreeSet<TaskId>| -> Result<(), Beat> {
                if let Some(l) = list {
                    let new = from_wire(l).map_err(|e| Beat::Fatal(e.to_string()))?;
                    if new != *into {
                        *into = new;
                        changed = true;
                    }
                }
                Ok(())
            };
        apply(&resp.active, &mut self.assigned.active)?;
        apply(&resp.standby, &mut self.assigned.standby)?;
        apply(&resp.warmup, &mut self.assigned.warmup)?;
        let mut st = self.shared.state.lock().unwrap();
        if let Some(e) = resp.endpoints {
            self.endpoint_epoch = resp.endpoint_epoch;
            *self.cfg.endpoints.lock().unwrap() = Some(e);
        }
        if changed || joining {
            tracing::info!(member = %self.member_id, epoch = self.epoch,
                active = ?self.assigned.active.iter().map(ToString::to_string).collect::<Vec<_>>(),
                standby = ?self.assigned.standby.iter().map(ToString::to_string).collect::<Vec<_>>(),
                warmup = ?self.assigned.warmup.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "assignment from the group coordinator");
            st.events.push(MemberEvent::Assigned(self.assigned.clone()));
        }
        Ok(())
    }

    fn leave(&mut self) {
        if self.epoch <= 0 {
            return;
        }
        let req = HeartbeatRequest {
            group_id: self.cfg.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: -1,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        if let Ok(conn) = self.connect() {
            let _ = conn.call(messages::STREAMS_GROUP_HEARTBEAT, 0, true, true, |w| {
                req.encode(w)
            });
        }
    }
}

/// A heartbeat that did not go through.
enum Beat {
    Retry(String),
    Fatal(String),
}

impl Beat {
    fn from_group(e: GroupError) -> Beat {
        match e {
            GroupError::Io(_) | GroupError::Wire(_) | GroupError::Broker { .. } => {
                Beat::Retry(e.to_string())
            }
            GroupError::Auth(_) | GroupError::Config(_) | GroupError::Unsupported(_) => {
                Beat::Fatal(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_go_to_the_wire_grouped_by_subtopology_and_back() {
        let set: BTreeSet<TaskId> = [(0, 1), (0, 3), (1, 0)]
            .into_iter()
            .map(|(subtopology, partition)| TaskId {
                subtopology,
                partition,
            })
            .collect();
        let wire = to_wire(&set);
        assert_eq!(wire.len(), 2);
        assert_eq!(wire[0].partitions, vec![1, 3]);
        assert_eq!(from_wire(&wire).unwrap(), set);
        let bad = vec![TaskIds {
            subtopology: "x".into(),
            partitions: vec![0],
        }];
        assert!(from_wire(&bad).is_err());
    }

    #[test]
    fn member_ids_are_32_hex_digits_and_differ() {
        let a = random_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id());
    }
}
