"""What the two-host bed's Python ends share (silent-peer.py, stream.py)."""
import socket


def accept_one(port, marker):
    """Listens on PORT on every address, creates the file MARKER once listening (the other
    host waits for it), and returns the one connection accepted."""
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("0.0.0.0", port))
    lst.listen()
    open(marker, "w").close()
    conn, _ = lst.accept()
    lst.close()
    return conn
