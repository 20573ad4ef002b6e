package dev.kstreams.bench;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;

/**
 * The command line of the kstreams example binaries (examples/common/mod.rs), so the
 * benchmark driver starts both the same way:
 * --bootstrap-servers, --application-id, --input-topic, --output-topic, --state-dir,
 * --processing-guarantee (exactly_once means exactly_once_v2 here), --commit-interval-ms,
 * --num-stream-threads, --config key=value (repeatable, any StreamsConfig or client key).
 */
final class Cli {
    String bootstrapServers;
    String applicationId;
    String inputTopic;
    String outputTopic;
    String stateDir = Path.of(System.getProperty("java.io.tmpdir"), "kafka-streams").toString();
    String processingGuarantee = "exactly_once";
    Long commitIntervalMs;
    int numStreamThreads = 1;
    long dedupeTtlMs = 3_600_000L;
    final List<String[]> config = new ArrayList<>();

    static Cli parse(String[] args) {
        Cli c = new Cli();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("missing value for " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--bootstrap-servers" -> c.bootstrapServers = v;
                case "--application-id" -> c.applicationId = v;
                case "--input-topic" -> c.inputTopic = v;
                case "--output-topic" -> c.outputTopic = v;
                case "--state-dir" -> c.stateDir = v;
                case "--processing-guarantee" -> c.processingGuarantee = v;
                case "--commit-interval-ms" -> c.commitIntervalMs = Long.parseLong(v);
                case "--num-stream-threads" -> c.numStreamThreads = Integer.parseInt(v);
                case "--dedupe-ttl-ms" -> c.dedupeTtlMs = Long.parseLong(v);
                case "--config" -> {
                    int eq = v.indexOf('=');
                    if (eq <= 0) {
                        throw new IllegalArgumentException("--config '" + v + "' is not key=value");
                    }
                    c.config.add(new String[] {v.substring(0, eq), v.substring(eq + 1)});
                }
                default -> throw new IllegalArgumentException("unknown flag " + a);
            }
        }
        if (c.bootstrapServers == null || c.applicationId == null || c.inputTopic == null
                || c.outputTopic == null) {
            throw new IllegalArgumentException(
                    "--bootstrap-servers, --application-id, --input-topic and --output-topic are required");
        }
        return c;
    }

    Properties props() {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, numStreamThreads);
        String guarantee = switch (processingGuarantee) {
            case "exactly_once", "exactly_once_v2" -> StreamsConfig.EXACTLY_ONCE_V2;
            case "at_least_once" -> StreamsConfig.AT_LEAST_ONCE;
            default -> throw new IllegalArgumentException("unknown processing guarantee " + processingGuarantee);
        };
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        if (commitIntervalMs != null) {
            p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitIntervalMs);
        }
        for (String[] kv : config) {
            p.put(kv[0], kv[1]);
        }
        return p;
    }

    /** Runs the topology until SIGTERM/SIGINT; exits 1 if the streams client dies. */
    static void run(String name, Topology topology, Cli cli) throws InterruptedException {
        KafkaStreams streams = new KafkaStreams(topology, cli.props());
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            done.countDown();
        }, name + "-shutdown"));
        streams.start();
        done.await();
        if (streams.state() == KafkaStreams.State.ERROR) {
            System.err.println(name + ": the streams client failed");
            System.exit(1);
        }
    }
}
