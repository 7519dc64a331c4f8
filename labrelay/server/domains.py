# -*- test-case-name: tests.unit.test_vhost,tests.unit.test_https_proxy -*-
"""
The domains a proxy routed by name asks for (``type = http``, ``https``,
``tcpmux``): :func:`wanted_domains` checks ``custom_domains`` and
``subdomain`` against the server's ``subdomain_host`` as frps does, and
:func:`check_route_limits` refuses a proxy with more route keys than the
server allows, before a single route is built, so that one NewProxy stays
cheap to register (``max_domains_per_proxy``, ``max_locations_per_proxy``,
``max_routes_per_proxy``, ``max_routes_total``; 0 turns one off).
"""

from ..errors import ProxyError
from .vhost.routes import normalize_domain


def wanted_domains(message, subdomain_host: str) -> list:
    """Domains from *message*'s custom_domains and subdomain."""
    subdomain_host = normalize_domain(subdomain_host)
    domains = []
    for domain in message.custom_domains or []:
        domain = normalize_domain(domain)
        if not domain:
            continue
        if (
            subdomain_host
            and domain.count(".") > subdomain_host.count(".")
            and subdomain_host in domain
        ):
            raise ProxyError(
                f"custom domain [{domain}] should not belong "
                f"to subdomain host [{subdomain_host}]"
            )
        domains.append(domain)
    subdomain = message.subdomain.strip()
    if subdomain:
        if not subdomain_host:
            raise ProxyError(
                "subdomain is not supported because this "
                "feature is not enabled in remote frps"
            )
        if "." in subdomain or "*" in subdomain:
            raise ProxyError("'.' and '*' are not supported in subdomain")
        domains.append(normalize_domain(f"{subdomain}.{subdomain_host}"))
    if not domains:
        raise ProxyError("custom_domains and subdomain should set at least one of them")
    return domains


def check_route_limits(config, domains: list, locations: int, table_size: int) -> None:
    """Refuse *domains* x *locations* new routes on a route table holding
    *table_size* (see the module docstring)."""
    routes = len(domains) * locations
    for count, limit, what in (
        (len(domains), config.max_domains_per_proxy, "max_domains_per_proxy"),
        (locations, config.max_locations_per_proxy, "max_locations_per_proxy"),
        (routes, config.max_routes_per_proxy, "max_routes_per_proxy"),
    ):
        if 0 < limit < count:
            raise ProxyError(
                f"{count} {what.split('_')[1]} exceed the "
                f"{what} ({limit}) of this server"
            )
    limit = config.max_routes_total
    if 0 < limit < table_size + routes:
        raise ProxyError(
            f"the server holds its max_routes_total ({limit}) of vhost routes"
        )


def published_addresses(domains: list, port: int) -> str:
    """NewProxyResp's remote_addr: each domain with the port, unless it is
    80 or 443 (frp's ``CanonicalAddr``)."""
    return ",".join(
        domain if port in (80, 443) else f"{domain}:{port}" for domain in domains
    )
