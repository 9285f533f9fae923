"""The two-host bed's link end for one QEMU: a UDP socket on 127.0.0.1:LOCAL, connected to
127.0.0.1:REMOTE, with socket buffers of VTOE_2H_LINK_BUF bytes (default 4 MiB), left open as
fd 3 for the command it runs in its place (QEMU's `-netdev dgram,local.type=fd,local.str=3`).

    python3 link-socket.py LOCAL REMOTE -- COMMAND...

QEMU's own datagram sockets keep the host's default buffers (208 KiB here): a guest busy with
Soft-RoCE's work read its frames too late and the host dropped hundreds a minute, each one a
retransmission for rxe; a RoCE fabric is run lossless (PFC), so the bed's link is too."""
import os
import socket
import sys

SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # Linux; as root they pass net.core.*mem_max


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit("usage: link-socket.py LOCAL REMOTE -- COMMAND...")
    local, remote = int(sys.argv[1]), int(sys.argv[2])
    size = int(os.environ.get("VTOE_2H_LINK_BUF", str(4 << 20)))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for forced, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            s.setsockopt(socket.SOL_SOCKET, forced, size)
        except PermissionError:  # not root: as much as net.core.*mem_max allows
            s.setsockopt(socket.SOL_SOCKET, plain, size)
    s.bind(("127.0.0.1", local))
    s.connect(("127.0.0.1", remote))
    if s.fileno() != 3:
        os.dup2(s.fileno(), 3)
    os.set_inheritable(3, True)
    os.execvp(sys.argv[4], sys.argv[4:])


main()
