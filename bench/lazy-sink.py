"""A reader that reads nothing until told to.

  lazy-sink.py [RCVBUF [set|force]]

Listens on 127.0.0.1 (a port of the kernel's choosing; with SO_RCVBUF, or SO_RCVBUFFORCE past
net.core.rmem_max for root, set first if RCVBUF is given and not 0: its connection inherits
it), prints "READY PORT", accepts one connection, waits for a line on stdin, then reads the
connection to its end and prints "sank BYTES".  Used with write-ahead.py by
bench/verbs-buffering.sh and test/e2e-buffering.test.ts.
"""
import socket
import sys

rcvbuf = int(sys.argv[1]) if len(sys.argv) > 1 else 0
force = len(sys.argv) > 2 and sys.argv[2] == "force"
listener = socket.socket()
if rcvbuf:
    listener.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33) if force else socket.SO_RCVBUF, rcvbuf)
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print("READY", listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
sys.stdin.readline()
n = 0
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    n += len(data)
print("sank", n, flush=True)
