#!/usr/bin/env python3
"""Resident memory of a NATS server after one connection sent N large
messages, each to a subject of its own (`pub`), or each followed by a
subscription to a subject of its own (`sub`), with the connection still open.

A server that keeps a slice of its read buffer as a cache key or as a
subscription's subject keeps the whole buffer (grown to the message size)
alive with it: memory then grows with N times the message size, not with
what the subjects themselves take.

    bench/scripts/retained-by-subjects.py <server-binary> [pub|sub] [N] [SIZE]

Starts the server on a free local port with `-a 127.0.0.1 -p <port>` (no
JetStream), prints VmRSS of the server process, stops it. Standard library
only; speaks the NATS protocol on a plain socket.
"""
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    server = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "pub"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 1_000_000
    if mode not in ("pub", "sub"):
        sys.exit(f"mode must be pub or sub, not {mode}")
    port = free_port()
    proc = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        conn.recv(65536)
        conn.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        payload = b"x" * size
        for i in range(n):
            if mode == "pub":
                conn.sendall(b"PUB subj.%d %d\r\n" % (i, size) + payload + b"\r\n")
            else:
                conn.sendall(b"PUB big %d\r\n" % size + payload + b"\r\nSUB subj.%d %d\r\n" % (i, i + 1))
        conn.sendall(b"PING\r\n")
        got = b""
        while b"PONG" not in got:
            chunk = conn.recv(65536)
            if not chunk:
                sys.exit("the server closed the connection")
            got += chunk
        time.sleep(0.5)
        print(f"{server}: {mode} x {n} of {size} B to distinct subjects, "
              f"connection open: RSS {rss_mib(proc.pid):.1f} MiB")
        conn.close()
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
