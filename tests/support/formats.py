"""
The test configs in frp's v1 formats: an frps.ini or frpc.ini text written
again as TOML, YAML or JSON by labrelay's converter, so that a test can run
the same relay and client from either format.
"""


def in_format(text, filename, fmt="ini"):
    """*text* (an frps.ini or frpc.ini, as *filename* says) and its file
    name as ``labrelay-server convert`` / ``labrelay-client convert``
    writes them in frp's v1 format *fmt* ("toml", "yaml", "json"); "ini"
    leaves both as they are."""
    if fmt == "ini":
        return text, filename
    from labrelay.config import convert_client_config, convert_server_config

    server = filename.startswith("frps")
    convert = convert_server_config if server else convert_client_config
    return convert(text, filename, fmt=fmt), filename.rsplit(".", 1)[0] + "." + fmt
