"""Run the workshop's own emisor.py + receptor.py together and report messages per second.

Usage: python3 bench/seed_pair.py PORT MESSAGES SIZE
The seed files in compat/seed/ are run unchanged; only broker.REDIS_PORT is set (the module
reads it at call time), so they can talk to a Redis on any port. Prints one JSON object.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(HERE, "..", "compat", "seed")


def seed_process(port, module, stdout=subprocess.PIPE):
    code = f"import broker; broker.REDIS_PORT = {port}; import {module}; {module}.main()"
    return subprocess.Popen(
        [sys.executable, "-u", "-c", code],
        cwd=SEED,
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONIOENCODING="utf-8"),
    )


def main():
    port, total, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    receptor = seed_process(port, "receptor")
    # Wait for the receptor's banner so it is listening before the first message.
    for line in receptor.stdout:
        if "Escuchando".encode() in line:
            break
    text = "x" * size
    started = time.perf_counter()
    # The emisor's prompts are not read: send them nowhere, or a full pipe would stall it.
    emisor = seed_process(port, "emisor", stdout=subprocess.DEVNULL)
    feed = ("bench\n" + (text + "\n") * total + "salir\n").encode()

    def write_feed():
        emisor.stdin.write(feed)
        emisor.stdin.close()

    # Feed from a thread, so the receptor's output is drained while the emisor reads.
    writer = threading.Thread(target=write_feed, daemon=True)
    writer.start()
    received = 0
    for line in receptor.stdout:
        received += line.count("📥 Recibido".encode())
        if received >= total:
            break
    elapsed = time.perf_counter() - started
    receptor.send_signal(signal.SIGINT)
    emisor.wait(timeout=60)
    receptor.wait(timeout=10)
    print(json.dumps({"messages": received, "elapsed_s": elapsed, "msgs_per_sec": received / elapsed}))


if __name__ == "__main__":
    main()
