"""How far a writer gets before it blocks while its reader reads nothing.

  write-ahead.py PORT [SNDBUF [set|force [ENOUGH]]]

Connects to 127.0.0.1:PORT (with SO_SNDBUF, or SO_SNDBUFFORCE past net.core.wmem_max for root,
set first if SNDBUF is not 0), then writes without blocking for as long as room comes back
within 0.5 s (the verbs agent's send buffer makes room; a reader that reads nothing makes none),
or until it has written ENOUGH bytes.  Prints "ahead BYTES", then closes.  Used by bench/verbs-buffering.sh and test/e2e-buffering.test.ts.
"""
import select
import socket
import sys

port = int(sys.argv[1])
sndbuf = int(sys.argv[2]) if len(sys.argv) > 2 else 0
force = len(sys.argv) > 3 and sys.argv[3] == "force"
enough = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 62
c = socket.socket()
if sndbuf:
    c.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", 32) if force else socket.SO_SNDBUF, sndbuf)
c.connect(("127.0.0.1", port))
c.setblocking(False)
chunk, total = b"x" * 65536, 0
while total < enough:
    try:
        total += c.send(chunk)
    except BlockingIOError:
        if not select.select([], [c], [], 0.5)[1]:
            break
print("ahead", total, flush=True)
c.close()
