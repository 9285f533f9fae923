"""A peer that falls silent for good, and what the other side's socket reports.

  silent-peer.py server PORT CASE RW    accepts one connection, reads until the case's point,
                                        takes this host's link down until the client has its
                                        verdict (RW/CASE.verdict), then up again
  silent-peer.py client HOST PORT CASE RW
                                        CASE 'send-*': TCP_USER_TIMEOUT 5 s, sends until an error
                                        CASE 'keepalive-*': SO_KEEPALIVE (idle 2 s, interval 1 s,
                                        3 probes), waits in recv()
Prints "RESULT CASE <errno name> <seconds>": the error the client's socket gave and when.  Its
own timeout of 60 s, far beyond both settings, gives "timeout" if nothing noticed the silence.
"""
import errno
import os
import socket
import subprocess
import sys
import time

from bed_net import accept_one


def wait_file(path, seconds):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"no {path} within {seconds} s")
        time.sleep(0.1)


def server(port, case, rw):
    conn = accept_one(port, f"{rw}/{case}.listening")
    want = 4_000_000 if case.startswith("send") else 5
    got = 0
    while got < want:
        data = conn.recv(65536)
        if not data:
            sys.exit(f"{case}: end of stream after {got} bytes")
        got += len(data)
    subprocess.run(["ip", "link", "set", "eth0", "down"], check=True)
    wait_file(f"{rw}/{case}.verdict", 120)
    subprocess.run(["ip", "link", "set", "eth0", "up"], check=True)
    conn.close()


def client(host, port, case, rw):
    wait_file(f"{rw}/{case}.listening", 120)
    s = socket.socket()
    if case.startswith("send"):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)
    else:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    s.connect((host, port))
    s.settimeout(60)
    start = time.monotonic()
    outcome = "none"
    try:
        if case.startswith("send"):
            chunk = b"x" * 65536
            while True:
                s.send(chunk)
        else:
            s.sendall(b"hello")
            start = time.monotonic()
            data = s.recv(100)
            outcome = "eof" if not data else "data"
    except OSError as e:
        # socket.timeout is TimeoutError, as is an OSError with errno ETIMEDOUT: the errno tells
        # the socket's own verdict from our 60 s wait
        outcome = "timeout" if e.errno is None else errno.errorcode.get(e.errno, str(e.errno))
    print(f"RESULT {case} {outcome} {time.monotonic() - start:.1f}", flush=True)
    open(f"{rw}/{case}.verdict", "w").close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
