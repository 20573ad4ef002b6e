//! Unit tests of the exactly-once commit's steps (`txn_steps.rs`), with no
//! broker: a real `StreamTask` (source → a processor writing a persistent,
//! changelogged store → sink) whose records go to a fake sink, a fake
//! producer that fails any transaction call with any kind of error, and a
//! fake consumer that records (or refuses) the seeks of a rewind.
//!
//! Why: the failure branches of the pipelined commit (a held-back record
//! that fails on release, `begin_transaction` failing after a commit, a
//! failed abort, a seek failing after an abort, the hold-back cap) are
//! reached end to end only by chance. Each test drives one branch and
//! asserts what the producer saw (offsets committed, records sent, in which
//! transaction), what was dropped and where the input was rewound.
//!
//! The parts that need the whole `TaskManager` and a real consumer
//! (re-creating a task, handing it back to the group) are not run here:
//! the tests assert the `Settled` outcome that asks for them.

mod fakes;

use super::*;
use crate::ErrorPolicy;
use fakes::*;

#[test]
fn a_commit_sends_the_consumed_offsets_then_the_held_back_records_into_the_next_transaction() {
    let mut h = Harness::new();
    let settled = h.pipelined_commit(103, 105).unwrap();
    assert_eq!(settled, Settled::Committed);
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            out(102),
            offsets(103),
            Event::Commit,
            Event::Begin,
            out(103),
            out(104),
        ]
    );
    // The store's changelog records of the first transaction went out
    // before its offsets; those of the held-back records after the begin.
    let events = h.events();
    let first_offsets = events.iter().position(|e| *e == offsets(103)).unwrap();
    let changelog_before = events[..first_offsets]
        .iter()
        .filter(|e| matches!(e, Event::Send(t, _) if t == CHANGELOG))
        .count();
    assert_eq!(changelog_before, 3);
    assert_eq!(h.task.committed_offsets(), committed(103));
    assert!(h.in_txn);
    assert!(!h.no_defer);
    assert_eq!(h.aborting_since, None);
    assert_eq!(h.deferred.bytes(), 0);
    assert_eq!(abort_count(&h), 0);
    assert!(h.consumer.seeks.borrow().is_empty());
    // Records processed now go straight out, in the open transaction.
    lock(&h.log).clear();
    h.process(105, 106);
    assert_eq!(h.txn_events(), vec![out(105)]);
}

#[test]
fn retriable_send_offsets_is_retried_and_the_commit_goes_through() {
    let mut h = Harness::new();
    h.fail(Call::SendOffsets, TxnError::retriable("coordinator moved"));
    h.fail(Call::SendOffsets, TxnError::retriable("coordinator moved"));
    h.fail(Call::Commit, TxnError::retriable("broker down"));
    let settled = h.pipelined_commit(102, 103).unwrap();
    assert_eq!(settled, Settled::Committed);
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            offsets(102),
            Event::Commit,
            Event::Begin,
            out(102)
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert_eq!(abort_count(&h), 0);
}

#[test]
fn a_retriable_error_past_the_retry_time_aborts() {
    let mut h = Harness::new();
    h.retry_for = Duration::from_millis(30);
    *lock(&h.producer.always) = Some((Call::Commit, TxnError::retriable("broker down")));
    let job = {
        h.process(START, 102);
        h.prepare()
    };
    let result = job.run();
    *lock(&h.producer.always) = None;
    assert_eq!(h.settle(result).unwrap(), Settled::Rewound);
    assert_eq!(
        h.txn_events(),
        vec![out(100), out(101), offsets(102), Event::Abort, Event::Begin]
    );
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
    assert_eq!(h.task.committed_offsets(), committed(START));
}

#[test]
fn abortable_send_offsets_aborts_drops_the_held_back_records_and_rewinds_to_the_last_commit() {
    let mut h = Harness::new();
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "group rebalancing"),
    );
    let settled = h.pipelined_commit(103, 105).unwrap();
    assert_eq!(settled, Settled::Rewound);
    // No commit; the held-back 103 and 104 were never sent.
    assert_eq!(
        h.txn_events(),
        vec![out(100), out(101), out(102), Event::Abort, Event::Begin]
    );
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
    assert_eq!(h.task.committed_offsets(), committed(START));
    assert_eq!(h.deferred.bytes(), 0);
    assert!(h.in_txn);
    assert!(!h.no_defer);
    assert!(h.aborting_since.is_some());
    assert_eq!(abort_count(&h), 1);

    // Reprocessed from the rewind, the next commit takes everything and
    // ends the run of aborts.
    lock(&h.log).clear();
    h.process(START, 105);
    let job = h.prepare();
    let result = job.run();
    assert_eq!(h.settle(result).unwrap(), Settled::Committed);
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            out(102),
            out(103),
            out(104),
            offsets(105),
            Event::Commit,
            Event::Begin
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(105));
    assert_eq!(h.aborting_since, None);
}

#[test]
fn a_fenced_commit_asks_for_the_task_to_be_recreated() {
    let mut h = Harness::new();
    h.fail(
        Call::Commit,
        TxnError::new(TxnErrorKind::Fenced, "producer fenced"),
    );
    let settled = h.pipelined_commit(102, 104).unwrap();
    assert_eq!(
        settled,
        Settled::Recreate("commit_transaction for task 0_0: producer fenced".to_string())
    );
    // Neither aborted nor rewound here: the new producer's
    // init_transactions aborts, the re-created task reads from the group's
    // offsets. The held-back records were not sent.
    assert_eq!(h.txn_events(), vec![out(100), out(101), offsets(102)]);
    assert!(h.consumer.seeks.borrow().is_empty());
    assert_eq!(h.task.committed_offsets(), committed(START));
    assert_eq!(abort_count(&h), 0);
}

#[test]
fn a_fatal_commit_error_fails_the_thread() {
    let mut h = Harness::new();
    h.fail(
        Call::Commit,
        TxnError::new(TxnErrorKind::Fatal, "unknown topic"),
    );
    let err = h.pipelined_commit(102, 103).unwrap_err();
    assert_eq!(
        err.to_string(),
        StreamsError::Kafka("commit_transaction for task 0_0: unknown topic".into()).to_string()
    );
    assert_eq!(h.txn_events(), vec![out(100), out(101), offsets(102)]);
    assert!(h.consumer.seeks.borrow().is_empty());
}

#[test]
fn begin_failing_abortably_after_a_commit_drops_the_held_back_records_and_begins_again() {
    let mut h = Harness::new();
    h.fail(
        Call::Begin,
        TxnError::new(TxnErrorKind::Abortable, "abortable state"),
    );
    let settled = h.pipelined_commit(102, 104).unwrap();
    assert_eq!(settled, Settled::Rewound);
    // Committed; the begin failed, so the held-back 102 and 103 are
    // dropped and reprocessed from the offsets just committed.
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            offsets(102),
            Event::Commit,
            Event::Abort,
            Event::Begin
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert_eq!(*h.consumer.seeks.borrow(), committed(102));
    assert!(h.in_txn);
    assert_eq!(h.deferred.bytes(), 0);
}

#[test]
fn begin_failing_fenced_or_fatal_after_a_commit() {
    let mut h = Harness::new();
    h.fail(
        Call::Begin,
        TxnError::new(TxnErrorKind::Fenced, "fatal error"),
    );
    assert_eq!(
        h.pipelined_commit(102, 104).unwrap(),
        Settled::Recreate("begin_transaction for task 0_0: fatal error".to_string())
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert!(!h.in_txn);

    let mut h = Harness::new();
    h.fail(
        Call::Begin,
        TxnError::new(TxnErrorKind::Fatal, "Operation not valid in state Ready"),
    );
    let err = h.pipelined_commit(102, 104).unwrap_err();
    assert!(
        err.to_string()
            .contains("begin_transaction for task 0_0: Operation not valid"),
        "{err}"
    );
}

#[test]
fn a_failed_abort_asks_for_the_task_to_be_recreated() {
    let mut h = Harness::new();
    h.fail(Call::Commit, TxnError::new(TxnErrorKind::Abortable, "x"));
    h.fail(Call::Abort, TxnError::retriable("timed out"));
    h.fail(
        Call::Abort,
        TxnError::new(TxnErrorKind::Fatal, "abort refused"),
    );
    let settled = h.pipelined_commit(102, 103).unwrap();
    assert_eq!(
        settled,
        Settled::Recreate("abort failed: abort refused".to_string())
    );
    assert!(h.consumer.seeks.borrow().is_empty());
    assert_eq!(h.txn_events(), vec![out(100), out(101), offsets(102)]);
    assert_eq!(abort_count(&h), 1);

    // A retriable abort is retried.
    let mut h = Harness::new();
    h.fail(Call::Commit, TxnError::new(TxnErrorKind::Abortable, "x"));
    h.fail(Call::Abort, TxnError::retriable("timed out"));
    assert_eq!(h.pipelined_commit(102, 103).unwrap(), Settled::Rewound);
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
}

#[test]
fn a_seek_failing_after_an_abort_closes_the_task_and_rejoins() {
    let mut h = Harness::new();
    h.consumer.refuse = true;
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "x"),
    );
    let settled = h.pipelined_commit(102, 104).unwrap();
    assert_eq!(settled, Settled::CloseAndRejoin);
    // Aborted, not begun again: the task is to be closed.
    assert_eq!(h.txn_events(), vec![out(100), out(101), Event::Abort]);
    assert!(!h.in_txn);
}

#[test]
fn a_held_back_record_failing_on_release_aborts_and_stops_holding_back() {
    let mut h = Harness::new();
    *h.sink.refuse.borrow_mut() = Some("v104".to_string());
    let settled = h.pipelined_commit(102, 106).unwrap();
    assert_eq!(settled, Settled::Rewound);
    // The first transaction committed; of the held-back records 102 and
    // 103 went into the next one, 104 failed, 105 was dropped; that
    // transaction is aborted and the input rewound to the commit.
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            offsets(102),
            Event::Commit,
            Event::Begin,
            out(102),
            out(103),
            Event::Abort,
            Event::Begin
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert_eq!(*h.consumer.seeks.borrow(), committed(102));
    assert!(h.no_defer, "the task no longer holds records back");
    assert!(h.in_txn);
    assert_eq!(h.deferred.bytes(), 0);
    assert_eq!(abort_count(&h), 1);
}

#[test]
fn aborts_beyond_task_timeout_fail_the_thread() {
    let mut h = Harness::new();
    h.task_timeout = Duration::from_millis(50);
    h.aborting_since = Some(Instant::now() - Duration::from_millis(100));
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "still rebalancing"),
    );
    let err = h.pipelined_commit(102, 103).unwrap_err().to_string();
    assert!(err.contains("task 0_0 has not committed for"), "{err}");
    assert!(err.contains("(task.timeout.ms)"), "{err}");
    assert!(
        err.contains("send_offsets_to_transaction for task 0_0: still rebalancing"),
        "{err}"
    );
    // Within task.timeout.ms an abort is retried by reprocessing.
    let mut h = Harness::new();
    h.task_timeout = Duration::from_secs(60);
    h.aborting_since = Some(Instant::now() - Duration::from_millis(100));
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "x"),
    );
    assert_eq!(h.pipelined_commit(102, 103).unwrap(), Settled::Rewound);
}

#[test]
fn the_hold_back_cap_makes_reap_commits_wait() {
    let h = Harness::new();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let pool = super::commit_workers::CommitWorkers::new(0);
    let handle = pool
        .run(move || {
            let _ = wait.recv();
            Ok(TxnTimings::default())
        })
        .unwrap();
    let f = InFlight {
        handle,
        started: Instant::now(),
        shared: Arc::new(CommitShared::default()),
    };
    h.deferred.hold();
    // Not due while it runs and little is held back.
    assert!(!f.due(false, h.deferred.bytes()));
    assert!(f.due(true, h.deferred.bytes()));
    // One record held back past the cap: due although still running.
    let mut h = h;
    let big = "x".repeat(MAX_DEFERRED_BYTES);
    h.task
        .process(
            IN,
            0,
            START,
            0,
            Some(b"k"),
            Some(big.as_bytes()),
            Headers::default(),
        )
        .unwrap();
    assert!(h.deferred.bytes() > MAX_DEFERRED_BYTES);
    assert!(!f.handle.is_finished());
    assert!(f.due(false, h.deferred.bytes()));
    release.send(()).unwrap();
    while !f.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(f.due(false, 0));
}

#[test]
fn a_failed_commit_run_on_the_stream_thread_lets_go_of_the_task_s_store() {
    // A task that no longer holds records back (`no_defer`) runs its
    // commit job on the stream thread; `commit_eos` keeps the job's shared
    // part while the failure is settled, and a fenced task is re-created
    // then, which must reopen its RocksDB.
    let mut h = Harness::new();
    h.no_defer = true;
    h.fail(
        Call::Commit,
        TxnError::new(TxnErrorKind::Fenced, "producer fenced"),
    );
    h.process(START, 102);
    let job = h.prepare();
    let shared = job.shared.clone();
    let result = job.run();
    let settled = h.settle(result).unwrap();
    assert!(matches!(settled, Settled::Recreate(_)));
    // As `recreate_task`: close and drop the old task (the harness gets a
    // stand-in in another directory), open a new one on its state.
    let stand_in = open_task(
        &h.dir.join("stand-in"),
        h.sink.clone(),
        Rc::new(Deferred::default()),
        Arc::new(DeliveryTracker::default()),
    )
    .unwrap();
    let mut old = std::mem::replace(&mut h.task, stand_in);
    old.close();
    drop(old);
    let reopened = open_task(
        &h.dir,
        h.sink.clone(),
        Rc::new(Deferred::default()),
        Arc::new(DeliveryTracker::default()),
    );
    drop(shared);
    let mut reopened = reopened.unwrap_or_else(|e| {
        panic!("the re-created task could not open its store while the failed commit's job was kept: {e}")
    });
    reopened.close();
}

#[test]
fn a_changelog_record_refused_while_sealing_fails_the_thread_before_any_transaction_call() {
    let mut h = Harness::new();
    h.process(START, 102);
    // The store's changelog record of input 101 is refused when the
    // commit sends the write sets (step 1, on the stream thread): a
    // production error, not a Kafka one, so not abortable (prepare maps
    // only StreamsError::Kafka to an abort). It would be refused again
    // on reprocessing, and a changelog record cannot be skipped.
    *h.sink.refuse.borrow_mut() = Some("v101".to_string());
    let failed = match prepare_commit_eos(&mut h.task) {
        Err(f) => f,
        Ok(_) => panic!("sealing should fail"),
    };
    let err = h.settle(Err(failed)).unwrap_err();
    assert!(
        matches!(&err, StreamsError::Production { topic, message }
            if topic == CHANGELOG && message == "refused by the fake"),
        "{err:?}"
    );
    assert_eq!(h.txn_events(), vec![out(100), out(101)]);
    assert!(h.consumer.seeks.borrow().is_empty());
    assert_eq!(h.task.committed_offsets(), committed(START));
}

#[test]
fn a_hung_transaction_call_is_given_up_as_fenced_and_lets_go_of_the_sealed_write_sets() {
    let mut h = Harness::new();
    h.process(START, 102);
    let job = h.prepare();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let pool = super::commit_workers::CommitWorkers::new(0);
    let f = InFlight {
        handle: pool
            .run(move || {
                let _ = wait.recv();
                Ok(TxnTimings::default())
            })
            .unwrap(),
        started: Instant::now(),
        shared: job.shared.clone(),
    };
    assert!(!f.hung());
    // A call that started 50 s ago and has not returned.
    job.shared
        .in_call_since
        .store(now_ms() - 50_000, std::sync::atomic::Ordering::Relaxed);
    assert!(f.hung());
    assert!(f.due(false, 0));
    let shared = job.shared.clone();
    let Err(CommitFailure::Fenced(msg)) = abandon(id(), f) else {
        panic!("a hung commit is given up as fenced");
    };
    assert_eq!(msg, "a transaction call of task 0_0 did not return for 50s");
    assert!(lock(&shared.sealed).is_none());
    // The commit thread, should it come back, finds the commit given up.
    let Err(CommitFailure::Fenced(msg)) = job.run() else {
        panic!("a given-up commit does not write its state");
    };
    assert_eq!(msg, "the commit of task 0_0 was given up");
    let _ = release.send(());
}

/// Seen in CI on the 3-broker cluster: a partition leader was killed, a
/// task's producer left its transaction (a delivery failed), and the next
/// record the task sent was refused with `_STATE`. That refusal went to
/// `production.exception.handler` as if the record were at fault, and the
/// default handler (fail) stopped the instance. No record is at fault: the
/// transaction must be aborted and the input reprocessed.
#[test]
fn a_producer_that_left_its_transaction_aborts_the_task_no_handler_sees_the_record() {
    // log_and_continue would skip the record if a handler decided.
    let mut h = Harness::with_handlers(ErrorPolicy::LogAndContinue);
    h.process(START, 102);
    h.sink.out_of_txn.set(true);
    let e = h
        .task
        .process(
            IN,
            0,
            102,
            102,
            Some(b"k102"),
            Some(b"v102"),
            Headers::default(),
        )
        .expect_err("a refused record must not be skipped");
    assert!(e.is_transaction_aborted(), "{e}");
    assert_eq!(h.task.production_errors(), 0, "no handler decided");
    assert_eq!(h.task.processing_errors(), 0, "no handler decided");
    // The thread then aborts the task like a failed commit
    // (`TaskManager::abort_refused`): back to the last commit, nothing of
    // the aborted work kept, a new transaction.
    h.sink.out_of_txn.set(false);
    lock(&h.log).clear();
    let settled = h
        .settle(Err(CommitFailure::Abortable(e.to_string())))
        .unwrap();
    assert_eq!(settled, Settled::Rewound);
    assert_eq!(h.txn_events(), vec![Event::Abort, Event::Begin]);
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
    assert_eq!(h.task.committed_offsets(), committed(START));
    assert_eq!(abort_count(&h), 1);
    // Reprocessed in the new transaction, the records go out again.
    h.process(START, 103);
    assert_eq!(h.txn_events()[2..], [out(100), out(101), out(102)]);
}
