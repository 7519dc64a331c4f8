"""
The server's HTTP virtual hosts (frps ``vhost_http_port``), split by side:

* :mod:`.port`: :class:`Vhost` (route table, timeouts, pages, live
  connections) and its listener factory;
* :mod:`.front`: the user side, one HTTP/1.1 protocol per user connection
  (with :mod:`.auth`, Basic auth through the password throttle, and
  :mod:`.pages`, what the vhost answers itself);
* :mod:`.dispatch`: what one request head becomes (forwarded to a route's
  proxy, or answered by the vhost), without I/O;
* :mod:`.request`: pure checks of a request head and the routed path;
* :mod:`.routes`: the route table (Host, path, user -> proxy);
* :mod:`.headers`: pure header logic (hop-by-hop, rewrite, Basic
  credentials, framing);
* :mod:`.exchange`: the backend side, one request over one work
  connection (its states in :mod:`.exchange_state`);
* :mod:`.idle`: work connections kept idle between requests;
* :mod:`.proxy`: ``type = http`` proxies, the routes' targets, which open
  the work connections (``open_work()``);
* :mod:`.access_log`: the access-log line of each request.

The names other modules use are re-exported here.
"""

from .access_log import AccessRecord, clf_escape, clf_time
from .exchange import HttpExchange, WorkLink
from .front import MAX_HEAD, VhostConnection
from .idle import IdleWork
from .pages import NOT_FOUND_PAGE
from .port import (
    HEAD_TIMEOUT,
    IDLE_WORK_KEPT,
    IDLE_WORK_TIMEOUT,
    LINGER_TIMEOUT,
    MAX_IDLE_WORK,
    SURPLUS_IDLE_TIMEOUT,
    Vhost,
    VhostFactory,
)
from .proxy import HttpProxy
from .routes import RouteTable

__all__ = [
    "AccessRecord",
    "HEAD_TIMEOUT",
    "HttpExchange",
    "HttpProxy",
    "IDLE_WORK_KEPT",
    "IDLE_WORK_TIMEOUT",
    "IdleWork",
    "LINGER_TIMEOUT",
    "MAX_HEAD",
    "MAX_IDLE_WORK",
    "NOT_FOUND_PAGE",
    "RouteTable",
    "SURPLUS_IDLE_TIMEOUT",
    "Vhost",
    "VhostConnection",
    "VhostFactory",
    "WorkLink",
    "clf_escape",
    "clf_time",
]
