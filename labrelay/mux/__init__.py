"""yamux stream multiplexing (frp's tcp_mux) on Twisted."""
