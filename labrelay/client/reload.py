# -*- test-case-name: tests.unit.test_reload,tests.integration.test_reload -*-
"""
Live reload of the client's proxies (``frpc reload``, ``GET /api/reload``,
SIGHUP).

The config file is read again, re-templated and re-included, and only its
proxy sections are applied, as frpc does:

* a proxy no longer in the file is closed (CloseProxy) and forgotten;
* a proxy whose settings differ in any field is closed, then registered
  again (CloseProxy, NewProxy);
* a new proxy is registered (NewProxy);
* an unchanged proxy is not touched: its registration, and every user
  connection already flowing through it, carry on.

Changes to ``[common]`` need a restart; they are logged, naming the keys.
``start`` and ``includes`` are the exception: they decide which proxy
sections exist, so the new values are used (as in frpc); so are the admin
API's keys (:data:`ADMIN_KEYS`): new credentials apply to the next request,
and a new ``admin_addr``/``admin_port`` starts, moves or stops its listener
(``RelayClient.apply_admin``), so ``labrelay-client status`` works without
a restart.  A file that does not parse changes nothing.

:func:`diff_proxies` and :func:`common_changes` are pure; :func:`apply`
drives anything with the :class:`RelayClient` reload surface
(``proxies``, ``config``, ``add_proxy``, ``remove_proxy``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
from twisted.logger import Logger

from ..config import CLIENT_RELOADABLE, ClientConfig, ProxyConfig, load_client_config

_log = Logger()

#: The admin API's keys, which a reload applies.
ADMIN_KEYS = frozenset(key for key in CLIENT_RELOADABLE if key.startswith("admin_"))

#: ClientConfig fields that are not [common] keys, or that a reload applies
#: (the fields declared reloadable in ClientConfig).
_NOT_COMMON = frozenset({"proxies", "source", "warnings"}) | CLIENT_RELOADABLE


@attrs.frozen
class ProxyDiff:
    """What a reload does, by proxy name (each tuple sorted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


@attrs.frozen
class ReloadResult:
    """The outcome of one reload: the proxy diff and the [common] keys whose
    new values wait for a restart."""

    diff: ProxyDiff
    restart_keys: tuple[str, ...] = ()


def diff_proxies(
    old: Mapping[str, ProxyConfig], new: Iterable[ProxyConfig]
) -> ProxyDiff:
    """Compare the running proxies (name -> config) with a new list."""
    new_by_name = {p.name: p for p in new}
    added, changed, unchanged = [], [], []
    for name, proxy in new_by_name.items():
        if name not in old:
            added.append(name)
        elif old[name] != proxy:
            changed.append(name)
        else:
            unchanged.append(name)
    removed = [name for name in old if name not in new_by_name]
    return ProxyDiff(
        tuple(sorted(added)),
        tuple(sorted(removed)),
        tuple(sorted(changed)),
        tuple(sorted(unchanged)),
    )


def common_changes(old: ClientConfig, new: ClientConfig) -> tuple[str, ...]:
    """The [common] keys whose values differ (meta_* shown as ``meta_*``)."""
    keys = []
    for field in attrs.fields(ClientConfig):
        if field.name in _NOT_COMMON:
            continue
        if getattr(old, field.name) != getattr(new, field.name):
            keys.append("meta_*" if field.name == "metas" else field.name)
    return tuple(keys)


def apply(client, new: ClientConfig) -> ReloadResult:
    """
    Apply the proxies of *new* to *client*; keep its [common] settings.

    :param client: a :class:`labrelay.client.service.RelayClient` (or
        anything with its ``proxies``, ``config``, ``add_proxy`` and
        ``remove_proxy``).
    """
    old_configs = {name: state.config for name, state in client.proxies.items()}
    diff = diff_proxies(old_configs, new.proxies)
    new_by_name = {p.name: p for p in new.proxies}
    for name in diff.removed + diff.changed:
        client.remove_proxy(name)
    # Keep the file's order, so registration order matches a fresh start.
    for proxy in new.proxies:
        if proxy.name in diff.added or proxy.name in diff.changed:
            client.add_proxy(new_by_name[proxy.name])
    restart_keys = common_changes(client.config, new)
    client.config = attrs.evolve(
        client.config, proxies=new.proxies, start=new.start, includes=new.includes
    )
    if hasattr(client, "apply_admin"):
        client.apply_admin(new)
    for warning in new.warnings:
        # not 'warning=': Twisted's legacy observers (trial's, twistd's) take
        # an event with a 'warning' key for a Python warning
        _log.warn("{config_warning}", config_warning=warning)
    if restart_keys:
        _log.warn(
            "reload: [common] {keys} changed; that needs a restart "
            "(only proxy sections are reloaded)",
            keys=", ".join(restart_keys),
        )
    _log.info(
        "reload: {added} added, {removed} removed, {changed} changed, "
        "{unchanged} unchanged",
        added=_names(diff.added),
        removed=_names(diff.removed),
        changed=_names(diff.changed),
        unchanged=len(diff.unchanged),
    )
    return ReloadResult(diff, restart_keys)


def reload_from_file(client, path, environ=None) -> ReloadResult:
    """
    Read *path* again and :func:`apply` it to *client*.  Raises
    :class:`labrelay.config.ConfigError` (nothing changed) for a bad file.
    """
    strict = getattr(client, "strict_config", True)
    return apply(client, load_client_config(path, environ, strict=strict))


def _names(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(names) + "]" if names else "none"


__all__ = [
    "ProxyDiff",
    "ReloadResult",
    "diff_proxies",
    "common_changes",
    "apply",
    "reload_from_file",
]
