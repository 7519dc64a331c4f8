"""
Config texts and files for tests: frpc.ini text for a client of the test
relay, tcp proxy sections, and files written to a fresh directory and
rewritten in place (what a reload reads).
"""

from twisted.python.filepath import FilePath

from .harness import TOKEN


def client_text(server_port=7000, proxies="", extra=""):
    """frpc.ini text for a plain (no TLS) client of the test relay."""
    return (
        f"[common]\nserver_addr = 127.0.0.1\nserver_port = {server_port}\n"
        f"token = {TOKEN}\ntls_enable = false\n{extra}\n{proxies}"
    )


def write(testcase, text, name="frpc.ini"):
    """Write *text* to a fresh directory; return the file's path."""
    directory = FilePath(testcase.mktemp())
    directory.makedirs()
    path = directory.child(name)
    path.setContent(text.encode("utf-8"))
    return path.path


def rewrite(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def proxies(*specs):
    """tcp proxy sections: (name, local_port[, extra lines])."""
    text = ""
    for name, port, *extra in specs:
        text += f"[{name}]\nlocal_port = {port}\n" + "".join(extra) + "\n"
    return text


def write_ini(testcase, text) -> str:
    """Write *text* as frps.ini in a fresh directory; its path."""
    directory = FilePath(testcase.mktemp())
    directory.makedirs()
    path = directory.child("frps.ini")
    path.setContent(text.encode("utf-8"))
    return path.path
