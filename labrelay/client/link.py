# -*- test-case-name: tests.integration.test_tunnel -*-
"""
The client's link to the server when ``tcp_mux = true``: one yamux session
whose first stream is the control connection.

:class:`ControlMuxSession` is what the client's ``ClientService`` connects
for each attempt; work connections are later streams of the same session
(:meth:`labrelay.client.service.RelayClient.open_work_connection`).
"""

from ..mux.session import YamuxSession
from ..relay import set_no_delay
from .control import ClientControl


class ControlMuxSession(YamuxSession):
    """
    A client-side yamux session that, once connected, opens the control
    stream and starts the login on it.

    :param client: the :class:`~labrelay.client.service.RelayClient` that
        owns the link.
    """

    def __init__(self, client, **kwargs):
        super().__init__(is_client=True, **kwargs)
        self._relay_client = client

    def connectionMade(self):
        super().connectionMade()
        # Small frames (SYN, NewWorkConn, StartWorkConn) must not
        # wait for an ACK: without this every third new tunnelled
        # connection stalled ~40 ms on Nagle + delayed ACK.
        set_no_delay(self.transport)
        client = self._relay_client
        control = ClientControl(client)
        client._session = self
        client._start_login(control)
        self.open_stream(control)


__all__ = ["ControlMuxSession"]
