"""A reader that reads nothing until told to.

  lazy-sink.py

Listens on 127.0.0.1 (a port of the kernel's choosing), prints "READY PORT", accepts one
connection, waits for a line on stdin, then reads the connection to its end and prints
"sank BYTES".  Used with write-ahead.py by bench/verbs-buffering.sh and test/e2e-buffering.test.ts.
"""
import socket
import sys

listener = socket.socket()
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
