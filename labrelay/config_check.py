"""
``labrelay-server check`` and ``labrelay-client check``: load a config file
as the program would and say what it would say, without running anything.
"""

from .config import ConfigError


def check_config(program: str, load, path: str, out, err) -> int:
    """``check``: load *path* with *load*; print each warning and then the
    error, or a summary; 0 if it would start, 1 if not."""
    try:
        config = load(path)
    except ConfigError as e:
        for warning in e.warnings:
            print(f"{program}: warning: {warning}", file=err)
        print(f"{program}: {e}", file=err)
        return 1
    for warning in config.warnings:
        print(f"{program}: warning: {warning}", file=err)
    proxies = getattr(config, "proxies", None)
    what = f", {len(proxies)} proxies" if proxies is not None else ""
    print(f"{config.source}: OK ({len(config.warnings)} warnings{what})", file=out)
    return 0
