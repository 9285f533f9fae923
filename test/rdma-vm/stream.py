"""One checksummed stream end for the link-flap cases of two-host-suite.sh.

  stream.py recv PORT CASE RW [PAUSE_AT]
                                  accepts one connection and reads it to its end; with PAUSE_AT,
                                  stops reading once it has that many bytes (0: before it reads),
                                  creates RW/a.CASE-paused and resumes when the FIFO
                                  /tmp/CASE.resume is written (so the sender is blocked, mid-stream,
                                  for as long as the fault takes)
  stream.py recv-fd FD CASE RW     the same on one connection accepted from the listener FD
  stream.py send HOST PORT CASE BYTES
Prints "RESULT CASE received|sent BYTES SHA256" when the stream ended cleanly, or
"RESULT CASE recv-error|send-error BYTES ERRNO" when the socket reported an error (socat, which
these cases do not use, reads a reset as a clean end of stream).  A sender blocked for 40 s
(SO_SNDTIMEO) reports send-error EAGAIN.
"""
import errno
import hashlib
import os
import socket
import sys

from bed_net import accept_one


def report(case, kind, n, tail):
    print(f"RESULT {case} {kind} {n} {tail}", flush=True)


def pause(case, rw):
    open(f"{rw}/a.{case}-paused", "w").close()
    with open(f"/tmp/{case}.resume") as fifo:  # blocks until the script opens it to write
        fifo.read()


def recv(port, case, rw, pause_at=None):
    read_to_end(accept_one(port, f"{rw}/a.{case}-listening"), case, rw, pause_at)


def read_to_end(conn, case, rw, pause_at=None):
    digest, n = hashlib.sha256(), 0
    if pause_at == 0:
        pause(case, rw)
        pause_at = None
    with open(f"/tmp/{case}.bin", "wb") as out:  # its size is what flap_after watches
        try:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                digest.update(data)
                out.write(data)
                out.flush()
                n += len(data)
                if pause_at is not None and n >= pause_at:
                    pause(case, rw)
                    pause_at = None
        except OSError as e:
            return report(case, "recv-error", n, errno.errorcode.get(e.errno, e.errno))
    report(case, "received", n, digest.hexdigest())


def send(host, port, case, total):
    data = os.urandom(total)
    s = socket.create_connection((host, port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, (40).to_bytes(8, "little") + bytes(8))
    n = 0
    try:
        while n < total:
            n += s.send(data[n:n + (1 << 20)])
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        return report(case, "send-error", n, errno.errorcode.get(e.errno, e.errno))
    report(case, "sent", n, hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]), sys.argv[3], sys.argv[4], *map(int, sys.argv[5:6]))
    elif sys.argv[1] == "recv-fd":
        conn, _ = socket.socket(fileno=int(sys.argv[2])).accept()
        read_to_end(conn, sys.argv[3], sys.argv[4])
    else:
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
