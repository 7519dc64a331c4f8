"""The relay server (frps): control sessions, work-connection pools, proxies."""
