#!/usr/bin/env python3
"""How many messages one client gets stored through many pages and the API of a `charla web`
gateway in a few seconds (issue 18, finding 5). Standard library only.

    bench/web_client_rate.py [--charla target/debug/charla] [--pages 100] [--seconds 4]

Starts `charla serve` and `charla web --max-connections-per-ip 0` (so the connection cap does
not hide the rate) on free ports, opens PAGES WebSocket pages from 127.0.0.1, has each post
as fast as it can for SECONDS while a thread posts through the API from the same address,
then counts the messages the room holds. With one rate per client the count stays near
--burst + --rate x seconds (20 + 5 x s by default), whatever the number of pages.
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, limit=20.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def frame(text):
    """A masked client text frame (zero mask: the payload is sent as is)."""
    payload = text.encode()
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + b"\0\0\0\0" + payload


def open_page(port, room, name):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ws?room={room}&name={name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"page {name}: connection closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        status = head.split(b"\r\n")[0].decode()
        raise SystemExit(f"page {name}: {status}")
    s.setblocking(False)
    return s


def xlen(port, key):
    """The room's length as the broker counts it (XLEN: the API's pages stop at 1000)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"*2\r\n$4\r\nXLEN\r\n${len(key)}\r\n{key}\r\n".encode())
        reply = s.recv(64).decode()
    if not reply.startswith(":"):
        raise SystemExit(f"XLEN {key}: {reply!r}")
    return int(reply[1:].strip())


def api_poster(port, room, stop, codes):
    body = json.dumps({"usuario": "api", "mensaje": "x"}).encode()
    while not stop.is_set():
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/rooms/{room}/messages",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--charla", default="target/debug/charla")
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="charla-rate-")
    env = dict(os.environ, HOME=work, XDG_CONFIG_HOME=work, CHARLA_NO_AUTOSTART="1")
    broker_port, web_port = free_port(), free_port()
    broker = subprocess.Popen(
        [args.charla, "serve", "--port", str(broker_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env["CHARLA_BROKER"] = f"redis://127.0.0.1:{broker_port}"
    time.sleep(0.5)
    web = subprocess.Popen(
        [args.charla, "web", "--listen", f"127.0.0.1:{web_port}", "--max-connections-per-ip", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{web_port}/healthz")
        room = f"rate{os.getpid()}"
        pages = [open_page(web_port, room, f"p{i}") for i in range(args.pages)]
        stop, codes = threading.Event(), []
        poster = threading.Thread(target=api_poster, args=(web_port, room, stop, codes))
        started = time.time()
        poster.start()
        post = frame(json.dumps({"mensaje": "x"}))
        while time.time() - started < args.seconds:
            for s in pages:
                try:
                    s.send(post)
                    s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    pass
            time.sleep(0.01)
        stop.set()
        poster.join()
        elapsed = time.time() - started
        time.sleep(1.0)
        stored = xlen(broker_port, room)
        accepted = sum(1 for c in codes if c in (201, 202))
        print(
            f"{args.pages} pages + the API of one client for {elapsed:.1f} s: {stored} messages "
            f"stored (API: {accepted} of {len(codes)} posts accepted)"
        )
    finally:
        web.kill()
        broker.kill()


if __name__ == "__main__":
    main()
