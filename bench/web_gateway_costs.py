#!/usr/bin/env python3
"""What one client can make `charla web` and its broker spend (issue 18, findings 2, 6, 7).

For each charla binary given (e.g. the current release and this tree), against a private
redis-server:
  rooms     N pages in N different rooms: Redis connections, keys created, gateway RSS growth;
            then /api/rooms: bytes and gateway CPU per call
  before    GET …/messages?limit=1000&before=<an id that is in no room>, over a room of
            10 000 messages: gateway and Redis CPU per call
  away      Redis killed: time until a new page gets its first frame, and /api/rooms,
            GET …/messages answer (capped at 10 s)

  bench/web_gateway_costs.py OLD_CHARLA NEW_CHARLA [--rooms 1000]

Loopback only; the gateway and Redis may be pinned (PIN=1: servers on core 0).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis

PIN = ["taskset", "-c", "0"] if os.environ.get("PIN") == "1" else []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=20):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http(port, method, path, body=b"", limit=10.0):
    """(status, body bytes, seconds); status 0 when nothing came within `limit`."""
    started = time.time()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=limit)
        s.settimeout(limit)
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
    except OSError:
        return 0, b"", time.time() - started
    head, _, rest = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split()[1])
    except (IndexError, ValueError):
        status = 0
    return status, rest, time.time() - started


def open_page(port, room, name="Ana"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        f"GET /ws?room={room}&name={name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head


def first_frame_seconds(port, room, limit=10.0):
    started = time.time()
    s, head = open_page(port, room)
    if not head.startswith(b"HTTP/1.1 101"):
        return None
    s.settimeout(limit)
    try:
        s.recv(2)  # the first frame's header: the hello
    except OSError:
        return limit
    finally:
        s.close()
    return time.time() - started


class Run:
    def __init__(self, charla, tmp):
        self.charla = charla
        self.rport = free_port()
        self.redis = subprocess.Popen(
            PIN + ["redis-server", "--port", str(self.rport), "--save", "", "--appendonly", "no",
                   "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.rport)
        self.r = redis.Redis(port=self.rport)
        help_text = subprocess.run([charla, "web", "--help"], capture_output=True, text=True).stdout
        extra = ["--max-connections-per-ip", "0", "--rate", "100000", "--burst", "100000"]
        if "--read-rate" in help_text:
            extra += ["--read-rate", "100000", "--read-burst", "100000"]
        if "--max-rooms" in help_text:
            extra += ["--max-rooms", "100000"]
        self.port = free_port()
        self.web = subprocess.Popen(
            PIN + [charla, "web", "--broker", f"redis://127.0.0.1:{self.rport}",
                   "--listen", f"127.0.0.1:{self.port}"] + extra,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, f"web-{self.port}.log"), "w"),
            env=dict(os.environ, CHARLA_NO_AUTOSTART="1", RUST_LOG="warn"),
        )
        wait_port(self.port)
        time.sleep(0.5)

    def stop(self):
        for p in (self.web, self.redis):
            p.kill()
            p.wait()

    def rooms(self, n):
        rss0 = rss_kib(self.web.pid)
        clients0 = self.r.info("clients")["connected_clients"]
        pages = []
        for i in range(n):
            s, head = open_page(self.port, f"room-{i}")
            if not head.startswith(b"HTTP/1.1 101"):
                print(f"    page {i} refused: {head[:60]!r}")
                break
            pages.append(s)
        time.sleep(2)
        out = {
            "pages": len(pages),
            "redis_connections": self.r.info("clients")["connected_clients"] - clients0,
            "keys": self.r.dbsize(),
            "gateway_rss_growth_mib": round((rss_kib(self.web.pid) - rss0) / 1024, 1),
        }
        cpu0 = cpu_seconds(self.web.pid)
        sizes = []
        for _ in range(50):
            status, body, _ = http(self.port, "GET", "/api/rooms")
            sizes.append(len(body))
        out["api_rooms_kib"] = round(max(sizes) / 1024, 1)
        out["api_rooms_cpu_ms"] = round((cpu_seconds(self.web.pid) - cpu0) * 1000 / 50, 2)
        for s in pages:
            s.close()
        return out

    def before_unknown(self, calls=50):
        pipe = self.r.pipeline(transaction=False)
        for i in range(10_000):
            msg = {"usuario": "Ana", "mensaje": f"m{i}", "hora": "12:00:00",
                   "id": f"01J{i:023d}"[:26], "room": "big"}
            pipe.xadd("big", {"payload": json.dumps(msg)})
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
        cpu0, rcpu0 = cpu_seconds(self.web.pid), self._redis_cpu()
        statuses = set()
        for _ in range(calls):
            status, _, _ = http(self.port, "GET", f"/api/rooms/big/messages?limit=1000&before={unknown}")
            statuses.add(status)
        return {
            "status": sorted(statuses),
            "gateway_cpu_ms_per_call": round((cpu_seconds(self.web.pid) - cpu0) * 1000 / calls, 2),
            "redis_cpu_ms_per_call": round((self._redis_cpu() - rcpu0) * 1000 / calls, 2),
        }

    def _redis_cpu(self):
        info = self.r.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    def away(self):
        self.redis.kill()
        self.redis.wait()
        deadline = time.time() + 20
        while time.time() < deadline and http(self.port, "GET", "/healthz")[0] != 503:
            time.sleep(0.1)
        out = {"first_frame_s": first_frame_seconds(self.port, "away")}
        for path in ["/api/rooms", "/api/rooms/away/messages"]:
            status, _, took = http(self.port, "GET", path)
            out[path] = f"{status or 'no answer'} in {took:.2f} s"
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("charla", nargs="+")
    ap.add_argument("--rooms", type=int, default=1000)
    args = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for charla in args.charla:
        tmp = tempfile.mkdtemp(prefix="charla-costs-")
        print(f"== {charla}")
        run = Run(charla, tmp)
        try:
            print(f"  rooms:  {run.rooms(args.rooms)}")
            print(f"  before: {run.before_unknown()}")
            print(f"  away:   {run.away()}")
        finally:
            run.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *_: sys.exit(1))
    main()
