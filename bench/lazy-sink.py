"""A reader that reads nothing until told to.

  lazy-sink.py [RCVBUF [set|force|after|raise]]

Listens on 127.0.0.1 (a port of the kernel's choosing; with SO_RCVBUF, or SO_RCVBUFFORCE past
net.core.rmem_max for root, set first if RCVBUF is given and not 0: its connection inherits
it), prints "READY PORT", accepts one connection (with "after", sets SO_RCVBUF on it and
prints "accepted"; with "raise", prints "accepted", waits for a line on stdin, then sets it and
prints "raised VALUE"), waits for a line on stdin, then reads the connection to its end and
prints "sank BYTES".  Used with write-ahead.py by bench/verbs-buffering.sh and
test/e2e-buffering.test.ts.
"""
import socket
import sys

rcvbuf = int(sys.argv[1]) if len(sys.argv) > 1 else 0
how = sys.argv[2] if len(sys.argv) > 2 else "set"
listener = socket.socket()
if rcvbuf and how in ("set", "force"):
    listener.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33) if how == "force" else socket.SO_RCVBUF, rcvbuf)
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print("READY", listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
if how in ("after", "raise"):
    if how == "raise":
        print("accepted", flush=True)
        sys.stdin.readline()
    if rcvbuf:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    print("raised" if how == "raise" else "accepted", conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
sys.stdin.readline()
n = 0
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    n += len(data)
print("sank", n, flush=True)
