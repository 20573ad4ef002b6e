package dev.kstreams.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Word count, as src/apps/word_count.rs: lines -> lowercase -> split on every
 * non-alphanumeric character, empty words dropped -> (word, "") -> group by key
 * (repartition topic <app>-counts-repartition) -> count in store "counts" -> output
 * (key: word, value: decimal count).
 */
public final class WordCount {
    /** The words of a line, as kstreams::apps::word_count::words. */
    static List<String> words(String line) {
        String lower = line.toLowerCase(Locale.ROOT);
        List<String> out = new ArrayList<>();
        int start = -1;
        for (int i = 0; i < lower.length(); ) {
            int cp = lower.codePointAt(i);
            boolean alnum = Character.isLetterOrDigit(cp);
            if (alnum && start < 0) {
                start = i;
            } else if (!alnum && start >= 0) {
                out.add(lower.substring(start, i));
                start = -1;
            }
            i += Character.charCount(cp);
        }
        if (start >= 0) {
            out.add(lower.substring(start));
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        Cli cli = Cli.parse(args);
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(cli.inputTopic, Consumed.with(Serdes.ByteArray(), Serdes.String()))
                .flatMap((k, line) -> {
                    List<KeyValue<String, String>> kvs = new ArrayList<>();
                    for (String w : words(line)) {
                        // An empty (not null) value: the repartition records carry only the word.
                        kvs.add(KeyValue.pair(w, ""));
                    }
                    return kvs;
                })
                .groupByKey(Grouped.with("counts", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .mapValues(v -> Long.toString(v))
                .to(cli.outputTopic, Produced.with(Serdes.String(), Serdes.String()));
        Cli.run("word_count", builder.build(), cli);
    }
}
