"""
``ssh -o ProxyCommand`` through an HTTP CONNECT proxy, for machines without
OpenBSD netcat (``nc -X connect -x PROXY %h %p``)::

    python3 connect_proxy.py PROXY_HOST PROXY_PORT HOST PORT

It sends ``CONNECT HOST:PORT``, reads the answer's head (a status other
than 200 exits 1 with the status line on stderr), then copies stdin to
the proxy and the proxy to stdout until either side ends.
"""

import os
import selectors
import socket
import sys


def main(proxy_host, proxy_port, host, port) -> int:
    sock = socket.create_connection((proxy_host, int(proxy_port)), timeout=30)
    target = f"{host}:{port}"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if status.split(b" ")[1:2] != [b"200"]:
        sys.stderr.write(f"proxy refused: {status.decode(errors='replace')}\n")
        return 1
    sock.settimeout(None)
    out = sys.stdout.fileno()
    if rest:
        os.write(out, rest)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    selector.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in selector.select():
            if key.data == "stdin":
                data = os.read(sys.stdin.fileno(), 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    selector.unregister(sys.stdin.fileno())
                else:
                    sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                os.write(out, data)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
