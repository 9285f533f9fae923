"""How far a writer gets before it blocks while its reader reads nothing.

  write-ahead.py PORT [SNDBUF [set|force|after [ENOUGH [MORE]]]]

Connects to 127.0.0.1:PORT (with SO_SNDBUF, or SO_SNDBUFFORCE past net.core.wmem_max for root,
set first if SNDBUF is not 0; with "after", SO_SNDBUF set once connected, then "connected" is
printed and a line awaited on stdin), then writes without blocking for as long as room comes
back within 0.5 s (the verbs agent's send buffer makes room; a reader that reads nothing makes
none), or until it has written ENOUGH bytes (0: no limit).  With MORE, once no room came back it
prints "full BYTES" and writes MORE bytes more, waiting for room as long as it takes.  Prints
"ahead BYTES", then closes.  Used by bench/verbs-buffering.sh and test/e2e-buffering.test.ts.
"""
import select
import socket
import sys

port = int(sys.argv[1])
sndbuf = int(sys.argv[2]) if len(sys.argv) > 2 else 0
how = sys.argv[3] if len(sys.argv) > 3 else "set"
enough = int(sys.argv[4]) if len(sys.argv) > 4 and int(sys.argv[4]) else 1 << 62
more = int(sys.argv[5]) if len(sys.argv) > 5 else 0
c = socket.socket()
if sndbuf and how in ("set", "force"):
    c.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", 32) if how == "force" else socket.SO_SNDBUF, sndbuf)
c.connect(("127.0.0.1", port))
if how == "after":
    if sndbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    print("connected", flush=True)
    sys.stdin.readline()
c.setblocking(False)
chunk, total = b"x" * 65536, 0
while total < enough:
    try:
        total += c.send(chunk)
    except BlockingIOError:
        if not select.select([], [c], [], 0.5)[1]:
            break
if more:
    print("full", total, flush=True)
    target = total + more
    while total < target:
        select.select([], [c], [])
        try:
            total += c.send(chunk[:target - total])
        except BlockingIOError:
            pass
print("ahead", total, flush=True)
c.close()
