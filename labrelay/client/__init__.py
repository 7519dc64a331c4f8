"""The tunnel client (frpc): control session, proxies, work connections."""
