package dev.kstreams.bench;

import java.io.IOException;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * Order aggregation, as src/apps/order_aggregation.rs: JSON orders (bytes) -> parse
 * (malformed dropped) -> dedupe by order_id (store "seen-orders", TTL in stream time)
 * -> group by customer (repartition <app>-orders-by-customer-repartition) -> aggregate
 * into store "customer-totals" -> output {"customer_id","orders","total_cents"}.
 */
public final class OrderAggregation {
    static final ObjectMapper JSON = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    public static final class Order {
        @JsonProperty("order_id") public String orderId;
        @JsonProperty("customer_id") public String customerId;
        @JsonProperty("amount_cents") public long amountCents;
        @JsonProperty("ts") public long ts;
    }

    @JsonPropertyOrder({"customer_id", "orders", "total_cents"})
    public static final class CustomerTotal {
        @JsonProperty("customer_id") public String customerId = "";
        @JsonProperty("orders") public long orders;
        @JsonProperty("total_cents") public long totalCents;
    }

    static <T> Serde<T> json(Class<T> cls) {
        Serializer<T> ser = (topic, v) -> {
            try {
                return v == null ? null : JSON.writeValueAsBytes(v);
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        };
        Deserializer<T> de = (topic, b) -> {
            try {
                return b == null ? null : JSON.readValue(b, cls);
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        };
        return Serdes.serdeFrom(ser, de);
    }

    /** Parses an order; null if it is not a JSON object with order_id and customer_id. */
    static Order parse(byte[] bytes) {
        if (bytes == null) {
            return null;
        }
        int i = 0;
        while (i < bytes.length && Character.isWhitespace(bytes[i])) {
            i++;
        }
        if (i == bytes.length || bytes[i] != '{') {
            return null;
        }
        try {
            Order o = JSON.readValue(bytes, Order.class);
            return (o.orderId == null || o.customerId == null) ? null : o;
        } catch (IOException e) {
            return null;
        }
    }

    /** Drops order ids seen within the TTL (stream time); purges expired ids every ttl/2. */
    static final class Dedupe implements Processor<String, Order, String, Order> {
        private final long ttlMs;
        private ProcessorContext<String, Order> ctx;
        private KeyValueStore<String, Long> seen;

        Dedupe(long ttlMs) {
            this.ttlMs = ttlMs;
        }

        @Override
        public void init(ProcessorContext<String, Order> context) {
            ctx = context;
            seen = context.getStateStore("seen-orders");
            context.schedule(java.time.Duration.ofMillis(Math.max(1, ttlMs / 2)),
                    PunctuationType.STREAM_TIME, now -> {
                        try (KeyValueIterator<String, Long> it = seen.all()) {
                            while (it.hasNext()) {
                                KeyValue<String, Long> kv = it.next();
                                if (kv.value <= now) {
                                    seen.delete(kv.key);
                                }
                            }
                        }
                    });
        }

        @Override
        public void process(Record<String, Order> record) {
            long now = ctx.currentStreamTimeMs();
            String id = record.value().orderId;
            Long expiry = seen.get(id);
            if (expiry != null && expiry > now) {
                return; // a re-sent order
            }
            seen.put(id, now + ttlMs);
            ctx.forward(record);
        }
    }

    public static void main(String[] args) throws Exception {
        Cli cli = Cli.parse(args);
        Serde<Order> orderSerde = json(Order.class);
        Serde<CustomerTotal> totalSerde = json(CustomerTotal.class);
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore("seen-orders"), Serdes.String(), Serdes.Long()));
        long ttl = cli.dedupeTtlMs;
        builder.stream(cli.inputTopic, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .process(() -> new Processor<byte[], byte[], String, Order>() {
                    private ProcessorContext<String, Order> ctx;

                    @Override
                    public void init(ProcessorContext<String, Order> context) {
                        ctx = context;
                    }

                    @Override
                    public void process(Record<byte[], byte[]> r) {
                        Order o = parse(r.value());
                        if (o != null) {
                            ctx.forward(r.withKey(o.orderId).withValue(o));
                        }
                    }
                }, Named.as("parse-orders"))
                .process(() -> new Dedupe(ttl), Named.as("dedupe-orders"), "seen-orders")
                .groupBy((orderId, order) -> order.customerId,
                        Grouped.with("orders-by-customer", Serdes.String(), orderSerde))
                .aggregate(CustomerTotal::new, (customer, order, total) -> {
                    CustomerTotal t = new CustomerTotal();
                    t.customerId = customer;
                    t.orders = total.orders + 1;
                    long sum = total.totalCents + order.amountCents;
                    // Saturating, as the Rust job.
                    if (((total.totalCents ^ sum) & (order.amountCents ^ sum)) < 0) {
                        sum = total.totalCents < 0 ? Long.MIN_VALUE : Long.MAX_VALUE;
                    }
                    t.totalCents = sum;
                    return t;
                }, Materialized.<String, CustomerTotal, KeyValueStore<Bytes, byte[]>>as("customer-totals")
                        .withKeySerde(Serdes.String())
                        .withValueSerde(totalSerde))
                .toStream()
                .to(cli.outputTopic, Produced.with(Serdes.String(), totalSerde));
        Cli.run("order_aggregation", builder.build(), cli);
    }
}
