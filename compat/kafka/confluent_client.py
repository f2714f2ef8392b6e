#!/usr/bin/env python3
"""A second, independent Kafka client for charla's interop tests: confluent-kafka (librdkafka).

    confluent_client.py produce --bootstrap B --topic T --count N [--chat] [--text S]
    confluent_client.py consume --bootstrap B --topic T --group G --count N [--timeout S]

produce: N messages, acks=all with idempotence. With --chat each value is a charla chat
message {"usuario","mensaje","hora","id","room","ts_us"} (mensaje is --text, numbered when
N > 1) and the key is the topic, as charla sends; without it the value is an arbitrary JSON
event {"type":"test_event","n":..} with key "key-<n>". Flushes and exits 0 only when every
message was delivered; otherwise prints the first delivery error and exits 1.

consume: from the earliest offset in group G (auto.offset.reset=earliest), prints one JSON
line per message like consumer.mjs: {"topic","partition","offset","key","value"}; after N
messages it commits their offsets synchronously, closes (leaving the group) and exits 0.
Exits 1 with a message if no message arrives for --timeout seconds (default 30).

Both create the topic first if it is missing (broker-default partitions), since tansu does
not auto-create topics; --no-create skips that.

Needs `pip install confluent-kafka` (bundles librdkafka).
"""
import argparse
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def ulid():
    """A ULID (48-bit ms time + 80 random bits, Crockford base32), like charla's ids."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def chat_message(usuario, mensaje, room):
    now_us = time.time_ns() // 1000
    return {
        "usuario": usuario,
        "mensaje": mensaje,
        "hora": time.strftime("%H:%M:%S", time.localtime(now_us / 1e6)),
        "id": ulid(),
        "room": room,
        "ts_us": now_us,
    }


def die(text):
    print(f"confluent_client.py: {text}", file=sys.stderr)
    sys.exit(1)


def ensure_topic(args):
    """Create the topic if missing, with the broker's default partitions.

    Workaround for tansu: tansu 0.6.0 does not create a topic on first use (its Metadata
    handler ignores allow_auto_topic_creation and answers UNKNOWN_TOPIC_OR_PARTITION), while
    Apache Kafka auto-creates by default. --no-create skips this.
    """
    if args.no_create:
        return
    # log_level 4: no info-level notice ("Purging 1 unserved events") when it is destroyed.
    admin = AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 4})
    if args.topic in admin.list_topics(timeout=args.timeout).topics:
        return
    future = admin.create_topics([NewTopic(args.topic)], operation_timeout=args.timeout)[args.topic]
    try:
        future.result(timeout=args.timeout)
    except KafkaException as err:
        if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            die(f"creating topic {args.topic}: {err}")


def produce(args):
    ensure_topic(args)
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "client.id": "charla-compat-confluent",
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": int(args.timeout * 1000),
        }
    )
    errors = []
    delivered = 0

    def on_delivery(err, msg):
        nonlocal delivered
        if err is not None:
            errors.append(err)
        else:
            delivered += 1

    for n in range(1, args.count + 1):
        if args.chat:
            text = args.text if args.count == 1 else f"{args.text} {n}"
            value = chat_message("confluent-kafka", text, args.topic)
            key = args.topic
        else:
            value = {"type": "test_event", "n": n, "ts_us": time.time_ns() // 1000}
            key = f"key-{n}"
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        while True:
            try:
                producer.produce(args.topic, payload, key.encode(), on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(args.timeout)
    if errors:
        die(f"{len(errors)} of {args.count} not delivered; first error: {errors[0]}")
    if left or delivered != args.count:
        die(f"only {delivered} of {args.count} delivered within {args.timeout} s")
    return 0


def consume(args):
    ensure_topic(args)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "client.id": "charla-compat-confluent",
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            # Offsets are committed explicitly, for exactly the messages printed.
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    received = 0
    last = {}  # (topic, partition) -> last offset printed
    deadline = time.monotonic() + args.timeout
    try:
        while received < args.count:
            if time.monotonic() > deadline:
                die(
                    f"timeout: no message for {args.timeout} s "
                    f"(received {received} of {args.count}) on topic {args.topic}, group {args.group}"
                )
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.error().fatal() or not msg.error().retriable():
                    die(f"consume error: {msg.error()}")
                continue
            received += 1
            deadline = time.monotonic() + args.timeout
            last[(msg.topic(), msg.partition())] = msg.offset()
            key, value = msg.key(), msg.value()
            print(
                json.dumps(
                    {
                        "topic": msg.topic(),
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "key": None if key is None else key.decode("utf-8", "replace"),
                        "value": None if value is None else value.decode("utf-8", "replace"),
                    },
                    ensure_ascii=False,
                    separators=(",", ":"),
                ),
                flush=True,
            )
        if last:
            consumer.commit(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                asynchronous=False,
            )
    except KafkaException as err:
        die(f"{err}")
    finally:
        consumer.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce", help="produce N messages and wait until all are delivered")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--chat", action="store_true", help="values are charla chat messages, key = topic")
    p.add_argument("--text", default="hola desde confluent-kafka", help="mensaje for --chat")
    p.add_argument("--timeout", type=float, default=30.0, help="delivery timeout in seconds")
    c = sub.add_parser("consume", help="consume N messages from earliest in a group")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--timeout", type=float, default=30.0, help="seconds without a message before giving up")
    for each in (p, c):
        each.add_argument("--no-create", action="store_true", help="do not create the topic if missing")
    args = parser.parse_args()
    if args.count < 1:
        die("--count must be at least 1")
    return produce(args) if args.command == "produce" else consume(args)


if __name__ == "__main__":
    sys.exit(main())
