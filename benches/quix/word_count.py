"""Quix Streams word count for the kstreams benchmark (benches/run.sh).

Same logic as src/apps/word_count.rs: lines -> lowercase -> split on every
non-alphanumeric character, empty words dropped -> group by word (a
repartition topic) -> count in a RocksDB state store -> output (key: word,
value: decimal count). Exactly-once, commit interval as given.

Flags follow the kstreams example binaries (examples/common/mod.rs).
"""

import argparse
import re

from quixstreams import Application

WORD = re.compile(r"[^\W_]+")


def words(line):
    return WORD.findall(line.lower())


def count(word, state):
    n = state.get("count", 0) + 1
    state.set("count", n)
    return str(n)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--application-id", required=True)
    p.add_argument("--input-topic", required=True)
    p.add_argument("--output-topic", required=True)
    p.add_argument("--state-dir", default="/tmp/quix-state")
    p.add_argument("--processing-guarantee", default="exactly_once")
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args()
    guarantee = {"exactly_once": "exactly-once", "at_least_once": "at-least-once"}[
        a.processing_guarantee
    ]
    extra = dict(kv.split("=", 1) for kv in a.config)
    app = Application(
        broker_address=a.bootstrap_servers,
        consumer_group=a.application_id,
        auto_offset_reset="earliest",
        commit_interval=a.commit_interval_ms / 1000.0,
        processing_guarantee=guarantee,
        state_dir=a.state_dir,
        consumer_extra_config=extra,
        producer_extra_config=extra,
        loglevel="WARNING",
    )
    lines = app.topic(a.input_topic, key_deserializer="bytes", value_deserializer="str")
    out = app.topic(a.output_topic, key_serializer="str", value_serializer="str")
    sdf = app.dataframe(lines)
    sdf = sdf.apply(words, expand=True)
    sdf = sdf.group_by(
        lambda word: word,
        name="counts",
        key_serializer="str",
        value_serializer="str",
        key_deserializer="str",
        value_deserializer="str",
    )
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
