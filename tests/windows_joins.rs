//! Windowed aggregations, `suppress` and joins through the test driver:
//! exact outputs for out-of-order records, grace boundaries, late records,
//! window expiry and table tombstones.

use std::time::Duration;

use kstreams::operators::{
    Consumed, Grouped, JoinWindows, Joined, KTable, Materialized, Produced, SessionWindows,
    SlidingWindows, StreamJoined, StreamsBuilder, Suppressed, TimeWindows, Windowed,
};
use kstreams::runtime::{Serdes, Topology, TopologyTestDriver};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Writes a windowed table as `key@[start,end)=value` strings to `out`.
fn to_text<V: Clone + std::fmt::Display + 'static>(t: KTable<Windowed<String>, V>, out: &str) {
    t.to_stream()
        .map(|w: Windowed<String>, v: V| {
            (
                w.key.clone(),
                format!("{}@[{},{})={v}", w.key, w.start, w.end),
            )
        })
        .to(out, Produced::with(Serdes::string(), Serdes::string()));
}

fn values(d: &mut TopologyTestDriver, topic: &str) -> Vec<String> {
    d.read_output(topic)
        .iter()
        .map(|r| r.value_str().unwrap_or("<null>").to_string())
        .collect()
}

fn late(d: &TopologyTestDriver) -> u64 {
    d.dropped_records()
        .iter()
        .filter(|((_, reason), _)| reason == "late")
        .map(|(_, n)| n)
        .sum()
}

fn tumbling_counts(suppressed: bool) -> Topology {
    let b = StreamsBuilder::new();
    let counts = b
        .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(5)))
        .count(Materialized::as_("counts"));
    let counts = if suppressed {
        counts.suppress(Suppressed::until_window_closes().with_name("final"))
    } else {
        counts
    };
    to_text(counts, "out");
    b.build().unwrap()
}

#[test]
fn tumbling_count_out_of_order_grace_boundary_and_late_records() {
    let mut d = TopologyTestDriver::new(tumbling_counts(false)).unwrap();
    // ts 8 arrives after 12 (out of order) but within grace; at stream time
    // 15 the window [0,10) closes (10 + 5 <= 15): ts 9 is late.
    for ts in [1, 3, 12, 8, 15, 9] {
        d.pipe_str("clicks", Some("a"), "x", ts).unwrap();
    }
    assert_eq!(
        values(&mut d, "out"),
        [
            "a@[0,10)=1",
            "a@[0,10)=2",
            "a@[10,20)=1",
            "a@[0,10)=3",
            "a@[10,20)=2",
        ]
    );
    assert_eq!(late(&d), 1);
    // Exactly at the boundary minus one: stream time 14 keeps [0,10) open.
    let mut d = TopologyTestDriver::new(tumbling_counts(false)).unwrap();
    for ts in [14, 9] {
        d.pipe_str("clicks", Some("a"), "x", ts).unwrap();
    }
    assert_eq!(values(&mut d, "out"), ["a@[10,20)=1", "a@[0,10)=1"]);
    assert_eq!(late(&d), 0);
    let store = d.window_store::<String, u64>("counts").unwrap();
    assert_eq!(
        store.all().unwrap(),
        vec![
            (Windowed::new("a".to_string(), 0, 10), 1),
            (Windowed::new("a".to_string(), 10, 20), 1)
        ]
    );
}

#[test]
fn hopping_windows_reduce_and_aggregate() {
    let b = StreamsBuilder::new();
    let g = b
        .stream(
            "temps",
            Consumed::with(Serdes::string(), Serdes::i64_text()),
        )
        .group_by_key(Grouped::default());
    let hop = TimeWindows::of_size_with_grace(ms(10), ms(0)).advance_by(ms(5));
    to_text(
        g.windowed_by(hop)
            .reduce(|a, b| a.max(b), Materialized::as_("max")),
        "max",
    );
    to_text(
        g.windowed_by(hop).aggregate(
            || 0i64,
            |_, v, sum| sum + v,
            Materialized::as_("sum").with_value_serde(Serdes::i64_be()),
        ),
        "sum",
    );
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    for (v, ts) in [("3", 7), ("9", 12), ("4", 9)] {
        d.pipe_str("temps", Some("k"), v, ts).unwrap();
    }
    // ts 7 is in [0,10) and [5,15); ts 12 in [5,15) and [10,20); ts 9 in
    // [0,10) and [5,15), but at stream time 12 without grace [0,10) is
    // closed: it only updates [5,15).
    assert_eq!(
        values(&mut d, "max"),
        [
            "k@[0,10)=3",
            "k@[5,15)=3",
            "k@[5,15)=9",
            "k@[10,20)=9",
            "k@[5,15)=9"
        ]
    );
    assert_eq!(
        values(&mut d, "sum"),
        [
            "k@[0,10)=3",
            "k@[5,15)=3",
            "k@[5,15)=12",
            "k@[10,20)=9",
            "k@[5,15)=16"
        ]
    );
    // One late drop per closed window, in each of the two aggregations.
    assert_eq!(late(&d), 2);
}

#[test]
fn suppress_emits_each_window_once_when_it_closes() {
    let mut d = TopologyTestDriver::new(tumbling_counts(true)).unwrap();
    for (k, ts) in [("a", 1), ("b", 2), ("a", 3), ("a", 12), ("a", 8)] {
        d.pipe_str("clicks", Some(k), "x", ts).unwrap();
    }
    assert!(values(&mut d, "out").is_empty(), "nothing closed yet");
    // Stream time 15: [0,10) closes, with a's late-but-in-grace ts 8.
    d.pipe_str("clicks", Some("c"), "x", 15).unwrap();
    assert_eq!(values(&mut d, "out"), ["a@[0,10)=3", "b@[0,10)=1"]);
    // A late record for the closed window changes nothing and is counted.
    d.pipe_str("clicks", Some("a"), "x", 9).unwrap();
    d.pipe_str("clicks", Some("a"), "x", 24).unwrap();
    assert!(values(&mut d, "out").is_empty());
    assert_eq!(late(&d), 1);
    d.pipe_str("clicks", Some("a"), "x", 25).unwrap();
    assert_eq!(values(&mut d, "out"), ["a@[10,20)=1", "c@[10,20)=1"]);
    // The buffer holds only the open window [20,30).
    let buffered = d
        .key_value_store_all::<Vec<u8>, Vec<u8>>("final-store")
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.first() == Some(&b'b'))
        .count();
    assert_eq!(buffered, 1);
}

#[test]
fn suppress_buffer_and_clocks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut d = TopologyTestDriver::builder(tumbling_counts(true))
            .state_dir(dir.path())
            .build()
            .unwrap();
        for ts in [1, 2, 14] {
            d.pipe_str("clicks", Some("a"), "x", ts).unwrap();
        }
        assert!(values(&mut d, "out").is_empty());
    }
    let mut d = TopologyTestDriver::builder(tumbling_counts(true))
        .state_dir(dir.path())
        .build()
        .unwrap();
    // The operators' stream time (14) came back with their stores: ts 3 is
    // still accepted for [0,10) (closes at 15), and the window is emitted
    // once, with all three records.
    d.pipe_str("clicks", Some("a"), "x", 3).unwrap();
    assert!(values(&mut d, "out").is_empty());
    d.pipe_str("clicks", Some("a"), "x", 15).unwrap();
    assert_eq!(values(&mut d, "out"), ["a@[0,10)=3"]);
    // After the restart a record for the closed window is still late.
    d.pipe_str("clicks", Some("a"), "x", 4).unwrap();
    assert_eq!(late(&d), 1);
    assert!(values(&mut d, "out").is_empty());
}

#[test]
fn window_store_stays_bounded_over_a_long_run() {
    // 1-minute windows, 10 s grace: retention 70 s, segments of 35 s.
    let b = StreamsBuilder::new();
    b.stream(
        "orders",
        Consumed::with(Serdes::string(), Serdes::i64_text()),
    )
    .group_by_key(Grouped::default())
    .windowed_by(TimeWindows::of_size_with_grace(
        Duration::from_secs(60),
        Duration::from_secs(10),
    ))
    .aggregate(
        || 0i64,
        |_, v, s| s + v,
        Materialized::as_("revenue").with_value_serde(Serdes::i64_be()),
    )
    .suppress(Suppressed::until_window_closes().with_name("final"))
    .to_stream()
    .map(|w: Windowed<String>, v: i64| (w.key, v))
    .to("out", Produced::with(Serdes::string(), Serdes::i64_text()));
    let mut d = TopologyTestDriver::builder(b.build().unwrap())
        .commit_every(50)
        .build()
        .unwrap();
    let keys = 10;
    let mut max_entries = 0;
    // Six simulated hours, one record per second.
    for s in 0..6 * 3600i64 {
        let key = format!("c{}", s % keys);
        d.pipe_str("orders", Some(&key), "1", s * 1000).unwrap();
        if s % 600 == 0 {
            let n = d
                .window_store::<String, i64>("revenue")
                .unwrap()
                .stored_entries()
                .unwrap();
            max_entries = max_entries.max(n);
        }
    }
    d.commit().unwrap();
    let store = d.window_store::<String, i64>("revenue").unwrap();
    eprintln!(
        "window store over 21600 records / 6 h of stream time, 10 keys: at most {max_entries} \
         entries, {} at the end",
        store.stored_entries().unwrap()
    );
    // Live windows span at most retention + one segment + one window
    // (70 + 35 + 60 s) per key: 3 windows of 60 s per key at most.
    assert!(max_entries <= 3 * keys as usize, "{max_entries} entries");
    assert!(store.stored_entries().unwrap() <= 3 * keys as usize);
    // Every window closed so far was emitted once, with 6 orders per key.
    let out = d
        .read_output_as("out", &Serdes::string(), &Serdes::i64_text())
        .unwrap();
    assert_eq!(out.len(), (6 * 60 - 1) * keys as usize);
    assert!(out.iter().all(|(_, v)| *v == 6));
    // Expired entries were tombstoned in the changelog, so it can be compacted.
    let tombstones = d
        .all_records("test-app-revenue-changelog")
        .iter()
        .filter(|r| r.value.is_none())
        .count();
    assert!(tombstones >= (6 * 60 - 3) * keys as usize, "{tombstones}");
}

fn customers_topology(left: bool) -> Topology {
    let b = StreamsBuilder::new();
    let customers = b.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("customers"),
    );
    let orders = b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let out = if left {
        orders.left_join(
            &customers,
            |o: &String, c: Option<&String>| {
                format!("{o} by {}", c.map(String::as_str).unwrap_or("?"))
            },
            Joined::default(),
        )
    } else {
        orders.join(
            &customers,
            |o: &String, c: &String| format!("{o} by {c}"),
            Joined::default(),
        )
    };
    out.to(
        "enriched",
        Produced::with(Serdes::string(), Serdes::string()),
    );
    b.build().unwrap()
}

#[test]
fn stream_table_inner_and_left_join_with_table_tombstones() {
    for left in [false, true] {
        let t = customers_topology(left);
        // The join connects both sources into one sub-topology: the
        // start-up check requires equal partition counts of its topics.
        let subs = t.subtopologies();
        assert_eq!(subs.len(), 1);
        let mut topics: Vec<_> = subs[0]
            .source_topics
            .iter()
            .map(|t| t.name.clone())
            .collect();
        topics.sort();
        assert_eq!(topics, ["customers", "orders"]);
        let mut d = TopologyTestDriver::new(t).unwrap();
        d.pipe_str("orders", Some("c1"), "o1", 0).unwrap();
        d.pipe_str("customers", Some("c1"), "Ann", 1).unwrap();
        d.pipe_str("orders", Some("c1"), "o2", 2).unwrap();
        d.pipe_str("customers", Some("c1"), "Ann B.", 3).unwrap();
        d.pipe_str("orders", Some("c1"), "o3", 4).unwrap();
        d.pipe_input("customers", Some(b"c1"), None, 5).unwrap(); // tombstone
        d.pipe_str("orders", Some("c1"), "o4", 6).unwrap();
        let expected: &[&str] = if left {
            &["o1 by ?", "o2 by Ann", "o3 by Ann B.", "o4 by ?"]
        } else {
            &["o2 by Ann", "o3 by Ann B."]
        };
        assert_eq!(values(&mut d, "enriched"), expected, "left={left}");
        assert!(
            d.key_value_store_all::<String, String>("customers")
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn a_rekeyed_stream_is_repartitioned_before_the_join() {
    let b = StreamsBuilder::new();
    let customers = b.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("customers"),
    );
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
        // value "customer:amount", keyed by order id
        .select_key(|_, v: &String| v.split(':').next().unwrap_or("").to_string())
        .join(
            &customers,
            |o: &String, c: &String| format!("{o} ({c})"),
            Joined::with(Serdes::string(), Serdes::string()).named("orders-by-customer"),
        )
        .to(
            "enriched",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    let t = b.build().unwrap();
    assert_eq!(t.subtopologies().len(), 2);
    let mut d = TopologyTestDriver::new(t).unwrap();
    d.pipe_str("customers", Some("c7"), "Bob", 0).unwrap();
    d.pipe_str("orders", Some("o1"), "c7:250", 1).unwrap();
    assert_eq!(
        d.all_records("test-app-orders-by-customer-repartition")[0].key_str(),
        Some("c7")
    );
    let out = d.read_output("enriched");
    assert_eq!(
        (out[0].key_str(), out[0].value_str()),
        (Some("c7"), Some("c7:250 (Bob)"))
    );
}

#[test]
fn joining_an_unmaterialized_table_is_a_clear_error() {
    let b = StreamsBuilder::new();
    let t = b
        .table(
            "customers",
            Consumed::with(Serdes::string(), Serdes::string()),
            Materialized::as_("customers"),
        )
        .filter(|_, _| true);
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .join(
            &t,
            |o: &String, c: &String| format!("{o}{c}"),
            Joined::default(),
        )
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("is not materialized"), "{err}");
}

/// A windowed table's changes, deletions included, as
/// `key@[start,end]=value` (`null` for a deletion).
fn changes_to_text(t: KTable<Windowed<String>, u64>, out: &str) {
    t.to_stream_with_tombstones()
        .map(|w: Windowed<String>, v: Option<u64>| {
            let v = v.map(|v| v.to_string()).unwrap_or_else(|| "null".into());
            (
                w.key.clone(),
                format!("{}@[{},{}]={v}", w.key, w.start, w.end),
            )
        })
        .to(out, Produced::with(Serdes::string(), Serdes::string()));
}

#[test]
fn session_windows_merge_out_of_order_records_and_drop_late_ones() {
    let b = StreamsBuilder::new();
    let sessions = b
        .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(SessionWindows::with_inactivity_gap_and_grace(ms(10), ms(5)))
        .count(Materialized::as_("sessions"));
    changes_to_text(sessions.clone(), "changes");
    sessions
        .suppress(Suppressed::until_window_closes().with_name("final"))
        .to_stream()
        .map(|w: Windowed<String>, n: u64| {
            (
                w.key.clone(),
                format!("{}@[{},{}]={n}", w.key, w.start, w.end),
            )
        })
        .to("final", Produced::with(Serdes::string(), Serdes::string()));
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    let pipe = |d: &mut TopologyTestDriver, k: &str, ts: i64| {
        d.pipe_str("clicks", Some(k), "x", ts).unwrap()
    };
    pipe(&mut d, "a", 0);
    pipe(&mut d, "a", 5); // merges with [0,0]
    pipe(&mut d, "a", 30); // a new session
    pipe(&mut d, "a", 18); // out of order, 12 before [30,30]: a new session
    pipe(&mut d, "a", 25); // bridges [18,18] and [30,30]
    assert_eq!(
        values(&mut d, "changes"),
        [
            "a@[0,0]=1",
            "a@[0,0]=null",
            "a@[0,5]=2",
            "a@[30,30]=1",
            "a@[18,18]=1",
            "a@[18,18]=null",
            "a@[30,30]=null",
            "a@[18,30]=3",
        ]
    );
    // [0,5] closed at stream time 21 (5 + gap 10 + grace 5 + 1): final at 30.
    assert_eq!(values(&mut d, "final"), ["a@[0,5]=2"]);
    pipe(&mut d, "b", 50);
    assert_eq!(values(&mut d, "changes"), ["b@[50,50]=1"]);
    assert_eq!(values(&mut d, "final"), ["a@[18,30]=3"]);
    // ts 2 would extend [0,5], which closed long ago: late.
    pipe(&mut d, "a", 2);
    assert!(values(&mut d, "changes").is_empty());
    assert_eq!(late(&d), 1);
    // Retention is gap + grace + 1 = 16 ms: at stream time 50 only b's
    // session is kept.
    assert_eq!(
        d.window_store::<String, u64>("sessions")
            .unwrap()
            .all()
            .unwrap(),
        vec![(Windowed::new("b".to_string(), 50, 50), 1)]
    );
}

#[test]
fn a_closed_session_is_final_even_while_retained() {
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(SessionWindows::with_inactivity_gap_no_grace(ms(10)))
        .count(Materialized::as_("sessions").with_retention(Duration::from_secs(60)));
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    for (k, ts) in [("a", 0), ("b", 20), ("a", 10)] {
        d.pipe_str("clicks", Some(k), "x", ts).unwrap();
    }
    // [0,0] closed at stream time 20 (0 + gap 10 < 20): ts 10 starts its own
    // session instead of reopening it.
    assert_eq!(
        d.window_store::<String, u64>("sessions")
            .unwrap()
            .all()
            .unwrap(),
        vec![
            (Windowed::new("a".to_string(), 0, 0), 1),
            (Windowed::new("a".to_string(), 10, 10), 1),
            (Windowed::new("b".to_string(), 20, 20), 1),
        ]
    );
}

fn people(kind: &str) -> Topology {
    let b = StreamsBuilder::new();
    let names = b.table(
        "names",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("names"),
    );
    let cities = b.table(
        "cities",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("cities"),
    );
    let opt = |s: Option<&String>| s.cloned().unwrap_or_else(|| "-".into());
    let joined = match kind {
        "inner" => names.join(&cities, |n: &String, c: &String| format!("{n}/{c}")),
        "left" => names.left_join(&cities, move |n: &String, c: Option<&String>| {
            format!("{n}/{}", opt(c))
        }),
        _ => names.outer_join(&cities, move |n: Option<&String>, c: Option<&String>| {
            format!("{}/{}", opt(n), opt(c))
        }),
    };
    joined.to_stream_with_tombstones().to(
        "people",
        Produced::with(Serdes::string(), Serdes::optional(Serdes::string())),
    );
    b.build().unwrap()
}

#[test]
fn table_table_inner_left_and_outer_joins_with_tombstones() {
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "inner",
            &[("u1", "Ann/Oslo"), ("u1", "Ann B/Oslo"), ("u1", "<null>")],
        ),
        (
            "left",
            &[
                ("u1", "Ann/-"),
                ("u1", "Ann/Oslo"),
                ("u1", "Ann B/Oslo"),
                ("u1", "Ann B/-"),
                ("u1", "<null>"),
            ],
        ),
        (
            "outer",
            &[
                ("u1", "Ann/-"),
                ("u1", "Ann/Oslo"),
                ("u1", "Ann B/Oslo"),
                ("u1", "Ann B/-"),
                ("u1", "<null>"),
                ("u2", "-/Rome"),
            ],
        ),
    ];
    for (kind, expected) in cases {
        let t = people(kind);
        assert_eq!(
            t.subtopologies().len(),
            1,
            "both tables in one sub-topology"
        );
        let mut d = TopologyTestDriver::new(t).unwrap();
        d.pipe_str("names", Some("u1"), "Ann", 0).unwrap();
        d.pipe_str("cities", Some("u1"), "Oslo", 1).unwrap();
        d.pipe_str("names", Some("u1"), "Ann B", 2).unwrap();
        d.pipe_input("cities", Some(b"u1"), None, 3).unwrap();
        d.pipe_input("names", Some(b"u1"), None, 4).unwrap();
        d.pipe_str("cities", Some("u2"), "Rome", 5).unwrap();
        let got: Vec<(String, String)> = d
            .read_output("people")
            .iter()
            .map(|r| {
                (
                    r.key_str().unwrap_or("").to_string(),
                    r.value_str().unwrap_or("<null>").to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{kind} join");
    }
}

fn views_clicks(kind: &str) -> Topology {
    let b = StreamsBuilder::new();
    let views = b.stream("views", Consumed::with(Serdes::string(), Serdes::string()));
    let clicks = b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    let w = JoinWindows::of_time_difference_and_grace(ms(10), ms(5));
    let opt = |s: Option<&String>| s.cloned().unwrap_or_else(|| "None".into());
    let joined = match kind {
        "inner" => views.join_stream(
            &clicks,
            |v: &String, c: &String| format!("{v}+{c}"),
            w,
            StreamJoined::default(),
        ),
        "left" => views.left_join_stream(
            &clicks,
            move |v: &String, c: Option<&String>| format!("{v}+{}", opt(c)),
            w,
            StreamJoined::default(),
        ),
        _ => views.outer_join_stream(
            &clicks,
            move |v: Option<&String>, c: Option<&String>| format!("{}+{}", opt(v), opt(c)),
            w,
            StreamJoined::default(),
        ),
    };
    joined.to("joined", Produced::with(Serdes::string(), Serdes::string()));
    b.build().unwrap()
}

#[test]
fn stream_stream_inner_left_and_outer_joins_with_grace() {
    let cases: [(&str, &[&str]); 3] = [
        ("inner", &["v1+c1", "v2+c1"]),
        ("left", &["v1+c1", "v2+c1", "v3+None", "v4+None"]),
        (
            "outer",
            &["v1+c1", "v2+c1", "None+c2", "None+c3", "v3+None", "v4+None"],
        ),
    ];
    for (kind, expected) in cases {
        let t = views_clicks(kind);
        assert_eq!(
            t.subtopologies().len(),
            1,
            "both inputs in one sub-topology"
        );
        let mut d = TopologyTestDriver::new(t).unwrap();
        let steps = [
            ("views", "a", "v1", 100),
            ("clicks", "a", "c1", 105),  // joins v1
            ("clicks", "b", "c2", 108),  // no view of b near it
            ("views", "a", "v2", 95),    // out of order, within grace: joins c1
            ("views", "b", "v3", 130),   // too far from c2
            ("clicks", "a", "c3", 131),  // too far from v1, v2
            ("views", "a", "v4", 150),   // c2 can no longer be joined: emitted alone
            ("views", "a", "late", 120), // 120 + 10 + 5 < 150: late
            ("clicks", "z", "end", 200), // closes everything else
        ];
        for (topic, k, v, ts) in steps {
            d.pipe_str(topic, Some(k), v, ts).unwrap();
        }
        assert_eq!(values(&mut d, "joined"), expected, "{kind} join");
        assert_eq!(late(&d), 1, "{kind} join");
    }
}

#[test]
fn stream_stream_join_buffers_stay_bounded() {
    let mut d = TopologyTestDriver::builder(views_clicks("outer"))
        .commit_every(20)
        .build()
        .unwrap();
    for i in 0..5_000i64 {
        let topic = if i % 2 == 0 { "views" } else { "clicks" };
        d.pipe_str(topic, Some(&format!("k{}", i % 7)), "x", i * 3)
            .unwrap();
    }
    // Retention 26 ms, segments of 13 ms; records every 3 ms: a few dozen
    // entries per store at most.
    for store in [
        "KSTREAM-JOIN-0000000002-this-store",
        "KSTREAM-JOIN-0000000002-other-store",
    ] {
        let n = d
            .window_store::<String, Vec<String>>(store)
            .map(|s| s.stored_entries().unwrap())
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        assert!(n <= 30, "{store}: {n} entries");
    }
}

#[test]
fn sliding_windows_with_out_of_order_and_late_records() {
    let b = StreamsBuilder::new();
    let counts = b
        .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(SlidingWindows::with_time_difference_and_grace(
            ms(10),
            ms(20),
        ))
        .count(Materialized::as_("sliding"));
    changes_to_text(counts, "out");
    let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    for ts in [10, 15, 30, 12, 60, 35] {
        d.pipe_str("clicks", Some("a"), "x", ts).unwrap();
    }
    assert_eq!(
        values(&mut d, "out"),
        [
            "a@[0,10]=1",
            // 15: its left window, and the right window of 10 now holds 15.
            "a@[5,15]=2",
            "a@[11,21]=1",
            "a@[20,30]=1",
            // 12, out of order: every window holding 12 changes, and 12's
            // right window appears (15 is in it).
            "a@[2,12]=2",
            "a@[5,15]=3",
            "a@[11,21]=2",
            "a@[13,23]=1",
            "a@[50,60]=1",
        ]
    );
    // 35 + grace 20 < stream time 60: late.
    assert_eq!(late(&d), 1);
}

#[allow(dead_code)]
fn _unused() {}
