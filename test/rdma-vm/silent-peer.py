"""A peer that falls silent for good, and what the other side's socket reports.

  silent-peer.py server PORT CASE RW    accepts one connection, reads until the case's point,
                                        takes this host's link down until the client has its
                                        verdict (RW/CASE.verdict), then up again
  silent-peer.py client HOST PORT CASE RW
                                        CASE 'send-*': TCP_USER_TIMEOUT 5 s, sends until an error
                                        CASE 'keepalive-*': SO_KEEPALIVE (idle 2 s, interval 1 s,
                                        3 probes), waits in recv()
                                        CASE 'credits-*': TCP_USER_TIMEOUT 5 s; once the server
                                        stopped reading, sends until blocked, then waits in send()
In 'credits-*' the server stops reading (offloaded, it also stops its host's agent,
VTOE_TEST_AGENT_PID, so that no receive is posted again and the writer runs out of message
credits, not only bytes); the writer has waited CREDIT_WAIT_S seconds, blocked, when the link
goes down: a writer waiting for credits must still find its peer dead.
Prints "RESULT CASE <errno name> <seconds>": the error the client's socket gave and when.  Its
own timeout of 60 s, far beyond both settings, gives "timeout" if nothing noticed the silence.
"""
import errno
import os
import signal
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


# How long the writer has waited for credits before its peer goes: long enough for several
# window probes (one a second) with the peer's HCA still answering.  The fault, not an order.
CREDIT_WAIT_S = 5


def server(port, case, rw):
    conn = accept_one(port, f"{rw}/{case}.listening")
    want = 4_000_000 if case.startswith("send") else 5
    agent = None
    got = 0
    while got < want:
        data = conn.recv(65536)
        if not data:
            sys.exit(f"{case}: end of stream after {got} bytes")
        got += len(data)
    if case.startswith("credits"):
        if case.endswith("-offload"):
            agent = int(os.environ["VTOE_TEST_AGENT_PID"])
            os.kill(agent, signal.SIGSTOP)
        open(f"{rw}/{case}.reading-stopped", "w").close()
        wait_file(f"{rw}/{case}.blocked", 120)
        time.sleep(CREDIT_WAIT_S)
    subprocess.run(["ip", "link", "set", "eth0", "down"], check=True)
    wait_file(f"{rw}/{case}.verdict", 120)
    subprocess.run(["ip", "link", "set", "eth0", "up"], check=True)
    if agent:
        os.kill(agent, signal.SIGCONT)
    conn.close()


def fill_until_blocked(s):
    """One-byte sends first, paced so that each leaves as a message of its own and takes one of
    the peer's receives (64 per connection: these are more), then larger ones until the socket
    takes no more."""
    s.setblocking(False)
    try:
        for _ in range(200):
            s.send(b"x")
            time.sleep(0.002)
        while True:
            s.send(b"x" * 4096)
    except BlockingIOError:
        pass
    s.settimeout(60)


def client(host, port, case, rw):
    wait_file(f"{rw}/{case}.listening", 120)
    s = socket.socket()
    if case.startswith("send") or case.startswith("credits"):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        elif case.startswith("credits"):
            s.sendall(b"hello")
            wait_file(f"{rw}/{case}.reading-stopped", 120)
            fill_until_blocked(s)
            open(f"{rw}/{case}.blocked", "w").close()
            start = time.monotonic()
            while True:
                s.send(b"x")
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
