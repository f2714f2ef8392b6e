#!/usr/bin/env python3
"""Reference Kafka throughput: a plain confluent-kafka (librdkafka) producer and consumer pair.

    python3 bench/kafka_raw.py [--bootstrap 127.0.0.1:9092] [-n 100000] [-s 100] [--timeout 600]

Does the work `charla bench` does on a Kafka broker, without charla: N messages in charla's
JSON format ({"usuario","mensaje","hora","id","room","ts_us"}, a fresh id and stamp per
message, `mensaje` of S bytes), produced with acks=all and enable.idempotence=true and
key = topic (as charla sends), to a fresh topic of 3 partitions made with AdminClient; one
consumer in a fresh group reads from earliest until it has all N. The consumer joins its
group before the first message is sent, as charla bench subscribes first. Producer and
consumer run in two processes (so neither waits on the other's Python GIL); both stamp
with the same wall clock.

Prints one JSON line:
    {"tool":"confluent-kafka","messages":N,"seconds":..,"msgs_per_sec":..}
where seconds runs from just before the first produce to the last message consumed.
Ends with the consumer closed and the topic deleted (--keep-topic keeps it); exits 1 if
the consumer does not get all N within --timeout seconds.  Needs `pip install confluent-kafka`.

Beware, tansu 0.6.0 with an SQL storage engine (sqlite://, postgres://): deleting one topic
deletes every topic of the cluster (its topic_delete_by.sql matches on the cluster only), so
run this on a broker of its own, or pass --keep-topic when other tests share the broker.
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def ulid():
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def run_consumer(bootstrap, topic, group, total, timeout, assigned, results):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "kafka-raw-consumer",
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )

    def on_assign(c, partitions):
        assigned.set()

    consumer.subscribe([topic], on_assign=on_assign)
    got = 0
    last_at = None
    error = None
    deadline = time.monotonic() + timeout
    try:
        while got < total:
            if time.monotonic() > deadline:
                error = f"timeout: consumed {got} of {total} in {timeout} s"
                break
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is None:
                    got += 1
                elif err.code() != KafkaError._PARTITION_EOF and (err.fatal() or not err.retriable()):
                    error = f"consume error: {err}"
            if error:
                break
        last_at = time.time()
        if got:
            consumer.commit(asynchronous=False)
    except Exception as exc:  # reported to the parent, which still cleans up
        error = error or f"consumer: {exc}"
    finally:
        consumer.close()
    results.put(("consumer", {"got": got, "last_at": last_at, "error": error}))


def run_producer(bootstrap, topic, total, size, timeout, results):
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "kafka-raw-producer",
            "acks": "all",
            "enable.idempotence": True,
        }
    )
    text = "x" * size
    key = topic.encode()
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)

    started_at = time.time()
    for _ in range(total):
        now_us = time.time_ns() // 1000
        payload = json.dumps(
            {
                "usuario": "bench",
                "mensaje": text,
                "hora": time.strftime("%H:%M:%S", time.localtime(now_us / 1e6)),
                "id": ulid(),
                "room": topic,
                "ts_us": now_us,
            },
            ensure_ascii=False,
            separators=(",", ":"),  # compact, as charla (serde_json) encodes
        ).encode()
        while True:
            try:
                producer.produce(topic, payload, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(timeout)
    error = None
    if failed:
        error = f"{len(failed)} not delivered; first: {failed[0]}"
    elif left:
        error = f"{left} still undelivered after {timeout} s"
    results.put(("producer", {"started_at": started_at, "done_at": time.time(), "error": error}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("-n", "--messages", type=int, default=100_000)
    parser.add_argument("-s", "--size", type=int, default=100, help="bytes of mensaje")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep-topic", action="store_true", help="do not delete the topic at the end")
    args = parser.parse_args()
    if args.messages < 1:
        sys.exit("kafka_raw.py: -n must be at least 1")

    run_id = ulid().lower()
    topic = f"charla-raw-{run_id}"
    group = f"raw-{run_id}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 4})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
        fut.result(timeout=30)

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    assigned = ctx.Event()
    consumer = ctx.Process(
        target=run_consumer,
        args=(args.bootstrap, topic, group, args.messages, args.timeout, assigned, results),
    )
    producer = None
    outcome = {}
    try:
        consumer.start()
        if not assigned.wait(60):
            raise SystemExit("kafka_raw.py: consumer got no partition assignment within 60 s")
        producer = ctx.Process(
            target=run_producer,
            args=(args.bootstrap, topic, args.messages, args.size, args.timeout, results),
        )
        producer.start()
        while len(outcome) < 2:
            try:
                role, data = results.get(timeout=args.timeout + 60)
            except Exception:
                raise SystemExit("kafka_raw.py: no result from producer/consumer")
            outcome[role] = data
    finally:
        for proc in (producer, consumer):
            if proc is not None:
                proc.join(30)
                if proc.is_alive():
                    proc.terminate()
        if not args.keep_topic:
            for fut in admin.delete_topics([topic], operation_timeout=30).values():
                try:
                    fut.result(timeout=60)
                except Exception as exc:
                    print(f"kafka_raw.py: deleting topic {topic}: {exc}", file=sys.stderr)

    errors = [d["error"] for d in outcome.values() if d.get("error")]
    if errors:
        sys.exit("kafka_raw.py: " + "; ".join(errors))
    seconds = outcome["consumer"]["last_at"] - outcome["producer"]["started_at"]
    print(
        json.dumps(
            {
                "tool": "confluent-kafka",
                "messages": args.messages,
                "seconds": round(seconds, 3),
                "msgs_per_sec": round(args.messages / seconds, 1),
            },
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
