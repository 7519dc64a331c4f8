# -*- test-case-name: tests.unit.test_vhost,tests.integration.test_vhost -*-
"""
What a vhost front connection writes to the user: each h11 event of a
response (:meth:`ResponseMixin.send`), batched while an exchange relays
one read of the backend (:meth:`~ResponseMixin.hold_writes`,
:meth:`~ResponseMixin.flush_writes`); the complete answers of the vhost
itself (:meth:`~ResponseMixin.respond`) and the refusals of requests h11
could not accept (:meth:`~ResponseMixin._refuse`); and the one
access-log line of each request
(:mod:`~labrelay.server.vhost.access_log`).

:class:`ResponseMixin` is the part of
:class:`~labrelay.server.vhost.front.VhostConnection` that does this; it
uses the connection's ``http``, ``transport``, ``clock``, ``client_ip``,
``_access``, ``_method`` and ``_held``, and its ``_after_response`` and
``_close``.
"""

from http import HTTPStatus

import h11

from ...writethrough import write_now
from .access_log import AccessRecord, write_access_line
from .pages import TEXT, refusal


class ResponseMixin:
    """The writing side of a front connection (see the module
    docstring)."""

    def _log_access(self, status_if_none: int = 0) -> None:
        """Write the current request's access-log line (once)."""
        record, self._access = self._access, None
        if record is not None:
            write_access_line(
                record, self.client_ip, self.clock.seconds(), status_if_none
            )

    def hold_writes(self) -> bool:
        """Hold what is sent to the user until :meth:`flush_writes` (the
        events of one read of the backend go out in one write); False if
        writes are held already (the outer holder flushes)."""
        if self._held is not None:
            return False
        self._held = []
        return True

    def flush_writes(self, at_once: bool = True) -> None:
        """Write what :meth:`hold_writes` held; *at_once*: to the socket
        now when its buffer is empty (no wait for the next reactor turn),
        else queued, to go out with what follows in this reactor turn (a
        streamed body arrives in many small pieces per turn)."""
        held, self._held = self._held, None
        if held:
            data = b"".join(held)
            if at_once:
                write_now(self.transport, data)
            else:
                self.transport.write(data)

    def _write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        else:
            self.transport.write(data)

    def send(self, event) -> None:
        """Send one h11 event to the user."""
        data = self.http.send(event)
        if data:
            self._write(data)
        record = self._access
        if record is not None:
            kind = type(event)
            if kind is h11.Data:
                record.bytes_sent += len(event.data)
            elif kind is h11.Response or kind is h11.InformationalResponse:
                record.status = event.status_code
            elif kind is h11.EndOfMessage:
                self._log_access()

    def _discard_buffered_body(self) -> None:
        """Consume request body events already received (no exchange wants
        them), so a complete request keeps its connection alive."""
        while self.http.their_state is h11.SEND_BODY:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return

    def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type=TEXT,
        extra=(),
        close: bool = False,
    ) -> None:
        """A complete response from the relay itself; the connection stays
        open only if the request was read to its end."""
        self._discard_buffered_body()
        if self.http.their_state not in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL):
            close = True
        headers = [
            (b"Content-Type", content_type),
            (b"Content-Length", b"%d" % len(body)),
        ] + list(extra)
        if close:
            headers.append((b"Connection", b"close"))
        self.send(
            h11.Response(
                status_code=status, headers=headers, reason=HTTPStatus(status).phrase
            )
        )
        if body and self._method != b"HEAD":
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        self._after_response()

    def _refuse(self, status: int, text: str) -> None:
        """Answer a request h11 could not accept, then close."""
        body = text.encode("utf-8", "replace") + b"\n"
        if self._access is None:  # no request line parsed
            self._access = AccessRecord(self.clock.seconds())
        self._access.status = status
        self._access.bytes_sent = len(body)
        self._log_access()
        self._write(refusal(status, body))
        self._close()
