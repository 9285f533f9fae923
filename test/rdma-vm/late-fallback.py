"""The late-fallback case of two-host-suite.sh, on the receiving host.

  late-fallback.py PORT CASE RW

An offloaded process (run it with the shim) listens on PORT, so its agent registers the listener
and takes the other host's REQ; then it hands the listener to a child without the shim
(stream.py recv-fd), which accepts the connection on kernel TCP and reads it to its end.  The
other host's agent must carry its offloaded client's stream over the client's kernel socket,
from the first byte.  Creates RW/a.CASE-listening once listening.
"""
import os
import socket
import subprocess
import sys

port, case, rw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("0.0.0.0", port))
lst.listen()
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
stream = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stream.py")
child = subprocess.Popen([sys.executable, stream, "recv-fd", str(lst.fileno()), case, rw],
                         pass_fds=[lst.fileno()], env=env)
open(f"{rw}/a.{case}-listening", "w").close()
sys.exit(child.wait())
