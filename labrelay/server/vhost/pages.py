# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost -*-
"""
What the vhost answers by itself, without a backend: the "nothing is
published here" page (or ``custom_404_page``), the 502/504 texts, and the
bytes of a refusal written before (or instead of) an h11 response.
"""

from http import HTTPStatus

TEXT = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"

#: The 504 and 502 texts of an exchange that got no response.
GATEWAY_TIMEOUT = (
    b"Gateway Timeout: the service behind this address did not answer in time\n"
)
BAD_GATEWAY = b"Bad Gateway: the service behind this address is not reachable\n"

#: labrelay's page for a host (or path) that no proxy serves.
NOT_FOUND_PAGE = b"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Not Found</title>
<style>
  body { max-width: 36em; margin: 3em auto; padding: 0 1em;
         font-family: Tahoma, Verdana, Arial, sans-serif; color: #333; }
</style>
</head>
<body>
<h1>Nothing is published here.</h1>
<p>No service answers at this address right now. Check the address, or
try again once the service behind it is connected.</p>
<p><em>labrelay</em></p>
</body>
</html>
"""


def load_not_found_page(path: str, log=None) -> bytes:
    """The ``custom_404_page`` file, or the built-in page when there is none
    or it cannot be read (logged, as frps does)."""
    if not path:
        return NOT_FOUND_PAGE
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        if log is not None:
            log.warn(
                "custom_404_page {path!r} cannot be read ({error}); "
                "using the built-in page",
                path=path,
                error=e.strerror,
            )
        return NOT_FOUND_PAGE


def refusal(status: int, body: bytes) -> bytes:
    """A complete ``Connection: close`` text response with *body*, as bytes
    (for a request h11 could not accept)."""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n"
        % (status, HTTPStatus(status).phrase.encode(), TEXT, len(body))
        + body
    )
