// Pieces of the small Python servers the end-to-end tests run, written once.

/** A listener `l` on 127.0.0.1 at a port the kernel picks, which it prints: the ready line. */
export function pyListener(backlog: number): string {
  return `l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', 0))
l.listen(${backlog})
print(l.getsockname()[1], flush=True)
`;
}

/** Echoes connection `c` until its peer's end of stream; `total` is the count of bytes. */
export const PY_ECHO_TO_EOF = `total = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
    total += len(d)
`;
