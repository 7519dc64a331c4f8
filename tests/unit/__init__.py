"""
Unit tests: memory only (``StringTransport``, ``iosim``, ``task.Clock``,
``MemoryReactorClock``); no real socket, no process, no global reactor.
The whole tier runs in seconds: ``python3 -m twisted.trial tests.unit``.
"""
