# -*- test-case-name: tests.unit.test_localweb,tests.unit.test_admin,tests.integration.test_admin,tests.system.test_admin,tests.unit.test_dashboard,tests.integration.test_dashboard -*-
"""
Which requests a web API meant for its own host accepts: the ``Host`` and
``Origin`` checks shared by the client's admin API and the server's
dashboard (what else they share is :mod:`labrelay.web`).

A browser can be made to send requests to ``127.0.0.1:7400`` by any web
page, two ways:

* **Cross-site requests**: a page on another origin posts a form or calls
  ``fetch(..., {mode: "no-cors"})``.  The browser says where the request
  comes from in ``Origin`` (and, in current browsers, ``Sec-Fetch-Site``),
  so :func:`cross_site` refuses a request whose ``Origin`` is not the
  API's own origin, and one marked by the browser as from another site.
* **DNS rebinding**: the attacker's name first resolves to the attacker's
  server (which serves the page), then to 127.0.0.1; the page is then
  "same-origin" with the API and may read its answers.  The request still
  carries the attacker's name in ``Host``, so :func:`host_allowed`
  accepts only names that cannot be rebound by a stranger: ``localhost``,
  the loopback literals, the configured listen address, the address the
  connection actually arrived on (an IP literal: reaching it directly is
  not rebinding), and names the operator lists.

A request without ``Host`` is refused too: every browser sends one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Optional, Union

#: Host names that always mean "this machine".
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Listen addresses that are not one address (all interfaces).
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def split_host(value: str) -> Optional[tuple[str, Optional[int]]]:
    """
    ``(name, port)`` of a ``Host`` header (``port`` None when absent), the
    name lower-cased and IPv6 brackets removed; None when malformed.
    """
    value = value.strip().lower()
    if not value or any(ch.isspace() or ch in "/\\@?#" for ch in value):
        return None
    port_text = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    elif value.count(":") == 1:
        name, port_text = value.split(":")
    elif ":" in value:
        return None  # an IPv6 literal must be bracketed in Host
    else:
        name = value
    name = name.rstrip(".") if name != "." else ""
    if not name:
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def _bare(address: str) -> str:
    return address.strip().lower().strip("[]")


class HostPolicy:
    """
    The ``Host`` and ``Origin`` policy of one listener.

    :param listen_addr: the configured listen address (``admin_addr``,
        ``dashboard_addr``); accepted as a host name unless a wildcard.
    :param extra_names: names the operator allows besides, with any port
        (a public name in front of the dashboard).
    :param default_port: the port a ``Host`` without one means (80, or 443
        over TLS).
    """

    def __init__(
        self, listen_addr: str, extra_names: Iterable[str] = (), default_port: int = 80
    ):
        names = set(LOCAL_NAMES)
        if listen_addr.strip() not in WILDCARDS:
            names.add(_bare(listen_addr))
        self.names = frozenset(names)
        self.extra_names = frozenset(
            _bare(name).rstrip(".") for name in extra_names if name.strip()
        )
        self.default_port = default_port

    def host_allowed(
        self, host: Optional[str], local_host: str, local_port: int
    ) -> bool:
        """
        Whether a request with this ``Host`` header (None: absent), which
        arrived on *local_host*:*local_port*, names this listener.
        """
        if host is None:
            return False
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.extra_names:
            return True
        if name not in self.names and name != _bare(local_host):
            return False
        return (port if port is not None else self.default_port) == local_port

    def cross_site(
        self,
        origin: Optional[str],
        fetch_site: Optional[str],
        host: str,
        scheme: Union[str, tuple] = "http",
    ) -> bool:
        """
        Whether a request is from another origin, by what the browser said:
        an ``Origin`` other than ``scheme://host`` (``null`` included; a
        tuple of schemes accepts each), or
        a ``Sec-Fetch-Site`` other than ``same-origin`` / ``none`` (typed in
        the address bar).  Scripts and command-line tools send neither.
        """
        if fetch_site is not None and fetch_site.strip().lower() not in (
            "same-origin",
            "none",
        ):
            return True
        if origin is None:
            return False
        schemes = (scheme,) if isinstance(scheme, str) else scheme
        return origin.strip().lower() not in {
            f"{one}://{host.strip().lower()}" for one in schemes
        }


def request_denial(
    policy: HostPolicy,
    request,
    scheme: Union[str, tuple] = "http",
    fetch_site: bool = True,
) -> Optional[tuple[int, str]]:
    """
    ``(status, text)`` refusing a ``twisted.web`` *request* by *policy*, or
    None when it may go on: 421 for a ``Host`` that does not name this
    listener, 403 for a cross-site request.

    :param fetch_site: whether to heed ``Sec-Fetch-Site`` (a read-only page
        may want to be opened from a link on another site, which browsers
        mark ``cross-site``; ``Origin`` is still checked).
    """

    def header(name: bytes) -> Optional[str]:
        value = request.getHeader(name)
        return None if value is None else value.decode("latin-1")

    local = request.getHost()
    host = header(b"host")
    if not policy.host_allowed(
        host, getattr(local, "host", ""), getattr(local, "port", 0)
    ):
        return 421, "421 Misdirected Request: unknown Host\n"
    site = header(b"sec-fetch-site") if fetch_site else None
    if policy.cross_site(header(b"origin"), site, host, scheme):
        return 403, "403 Forbidden: cross-origin request\n"
    return None


__all__ = ["HostPolicy", "request_denial", "split_host", "LOCAL_NAMES"]
