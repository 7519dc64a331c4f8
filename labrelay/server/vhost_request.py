# -*- test-case-name: tests.test_vhost_request -*-
"""
What the HTTP vhost refuses in a request head before routing it.  Pure
functions, no I/O; a refusal is a reason that the vhost answers 400.

Body framing (RFC 9112 §6.1, §6.3), read from the head as received
(h11 has already parsed it, and forgives some of what is refused here):

* a bare LF line ending, or an obs-fold continuation line (RFC 9112
  §2.2, §5.2): h11 accepts both, other parsers split the head differently;
* both ``Content-Length`` and ``Transfer-Encoding``;
* more than one ``Content-Length`` line, or one whose value is not only
  digits (``5, 5``, ``+5``, ``0x5``);
* ``Transfer-Encoding`` in an HTTP/1.0 request;
* a header named like a framing header with ``_`` for ``-``
  (``Transfer_Encoding``), which some servers read as the real one.

h11 refuses the rest itself: a Transfer-Encoding other than exactly one
``chunked`` (in any case, surrounded by whitespace), conflicting lengths,
malformed chunk lines.  What passes is forwarded with framing headers the
relay writes from h11's reading, never the ones received.
"""

from typing import Optional

#: Header names (lower case) that frame a message body.
FRAMING_NAMES = (b"content-length", b"transfer-encoding")


def framing_problem(head: bytes, http_version: bytes) -> Optional[str]:
    """
    Why the request head *head* (request line and header lines as
    received, up to the empty line) frames its body ambiguously, or None.
    """
    if b"\n" in head.replace(b"\r\n", b""):
        return "bare LF line ending"
    lengths = []
    encodings = 0
    for line in head.split(b"\r\n")[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding"
        name, _, value = line.partition(b":")
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif lower == b"transfer-encoding":
            encodings += 1
        elif lower.replace(b"_", b"-") in FRAMING_NAMES:
            return f"header {name.decode('ascii', 'replace')}"
    if lengths and encodings:
        return "both Content-Length and Transfer-Encoding"
    if len(lengths) > 1:
        return "more than one Content-Length"
    if lengths and not lengths[0].isdigit():
        return "Content-Length is not a number"
    if encodings and http_version != b"1.1":
        return "Transfer-Encoding in an HTTP/1.0 request"
    return None
