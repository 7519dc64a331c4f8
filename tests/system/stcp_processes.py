"""
stcp with real processes: config files for an owner client (one stcp
proxy) and a visitor client (one stcp visitor), in labrelay's INI or in
frp's v1 TOML for the real frpc (``LABRELAY_FRPC``), and a real frps
(``LABRELAY_FRPS``).
"""

import os

from ..support.processes import TOKEN, free_port, spawn, twistd, write_config

SK = "stcp-system-secret"

#: frpc's log line once its proxy is registered / its visitor started
FRPC_PROXY_UP = r"start proxy success"
FRPC_VISITOR_UP = r"start visitor success"


def owner_ini(server_port, local_port, mux=None, proxy_extra=""):
    mux_line = "" if mux is None else f"tcp_mux = {str(mux).lower()}\n"
    return (
        "[common]\nserver_addr = 127.0.0.1\n"
        f"server_port = {server_port}\ntoken = {TOKEN}\n{mux_line}"
        f"\n[ssh]\ntype = stcp\nsk = {SK}\nlocal_ip = 127.0.0.1\n"
        f"local_port = {local_port}\n{proxy_extra}"
    )


def visitor_ini(server_port, bind_port, mux=None, sk=SK, name="ssh_visitor", extra=""):
    mux_line = "" if mux is None else f"tcp_mux = {str(mux).lower()}\n"
    return (
        "[common]\nserver_addr = 127.0.0.1\n"
        f"server_port = {server_port}\ntoken = {TOKEN}\n{mux_line}"
        f"\n[{name}]\nrole = visitor\ntype = stcp\nserver_name = ssh\n"
        f"sk = {sk}\nbind_addr = 127.0.0.1\nbind_port = {bind_port}\n{extra}"
    )


def frpc_owner_toml(server_port, local_port):
    return (
        f'serverAddr = "127.0.0.1"\nserverPort = {server_port}\n'
        f'auth.token = "{TOKEN}"\nlog.disablePrintColor = true\n'
        f'[[proxies]]\nname = "ssh"\ntype = "stcp"\nsecretKey = "{SK}"\n'
        f'localIP = "127.0.0.1"\nlocalPort = {local_port}\n'
        "transport.useEncryption = true\n"
    )


def frpc_visitor_toml(server_port, bind_port):
    return (
        f'serverAddr = "127.0.0.1"\nserverPort = {server_port}\n'
        f'auth.token = "{TOKEN}"\nlog.disablePrintColor = true\n'
        f'[[visitors]]\nname = "ssh_visitor"\ntype = "stcp"\nserverName = "ssh"\n'
        f'secretKey = "{SK}"\nbindAddr = "127.0.0.1"\nbindPort = {bind_port}\n'
        "transport.useEncryption = true\ntransport.useCompression = true\n"
    )


async def labrelay_owner(testcase, server_port, local_port, mux=None, **kw):
    path = write_config(
        testcase, "frpc.ini", owner_ini(server_port, local_port, mux, **kw)
    )
    process = twistd(testcase, "labrelay-client", path, name="labrelay-owner")
    await process.wait_for(r"\[ssh\] start proxy success")
    return process


async def labrelay_visitor(
    testcase, server_port, mux=None, name="labrelay-visitor", **kw
):
    """A visitor client; returns (process, bind port) once it is logged
    in and listening."""
    bind_port = free_port()
    path = write_config(
        testcase, "frpc.ini", visitor_ini(server_port, bind_port, mux, **kw)
    )
    process = twistd(testcase, "labrelay-client", path, name=name)
    await process.wait_for(r"visitor \[\w+\] listening on 127\.0\.0\.1:\d+")
    await process.wait_for(r"login to server success")
    return process, bind_port


async def frpc_owner(testcase, frpc, server_port, local_port):
    path = write_config(testcase, "frpc.toml", frpc_owner_toml(server_port, local_port))
    process = spawn(testcase, "frpc-owner", [frpc, "-c", path])
    await process.wait_for(FRPC_PROXY_UP)
    return process


async def frpc_visitor(testcase, frpc, server_port):
    bind_port = free_port()
    path = write_config(
        testcase, "frpc.toml", frpc_visitor_toml(server_port, bind_port)
    )
    process = spawn(testcase, "frpc-visitor", [frpc, "-c", path])
    await process.wait_for(FRPC_VISITOR_UP)
    return process, bind_port


async def real_frps(testcase, frps):
    port = free_port()
    path = write_config(
        testcase,
        "frps.toml",
        f'bindAddr = "127.0.0.1"\nbindPort = {port}\nauth.token = "{TOKEN}"\n'
        "log.disablePrintColor = true\n",
    )
    process = spawn(testcase, "frps", [frps, "-c", path])
    await process.wait_for(r"frps started successfully")
    return process, port


def binary(variable):
    """The frp binary *variable* names, or None."""
    path = os.environ.get(variable, "")
    return path if path and os.access(path, os.X_OK) else None
