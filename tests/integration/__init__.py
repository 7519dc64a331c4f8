"""
Integration tests: labrelay's servers, clients and their peers in this
process, on the real reactor, over loopback sockets on 127.0.0.1.
"""
