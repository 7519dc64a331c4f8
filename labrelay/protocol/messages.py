"""
frp's control messages: their type bytes, JSON field names and value types.

Every message is a :class:`Message` subclass whose ``FIELDS`` list the JSON
keys in the order frp's Go structs declare them, so that what labrelay writes
is byte-for-byte what frp writes.  Encoding follows Go's ``omitempty``: zero
values are left out, except struct-valued fields (``client_spec``), which Go
always writes.  Decoding follows Go's ``encoding/json``: keys match without
regard to case, unknown keys are ignored, missing keys take zero values, and
a value of the wrong JSON type is an error.
"""

import json

from ..errors import ProtocolError

# Value kinds.  Each maps to a zero value and a validator.
STR, INT, UINT16, BOOL, MAP, LIST, OBJECT, ANY = (
    "str",
    "int",
    "uint16",
    "bool",
    "map",
    "list",
    "object",
    "any",
)

_INT64 = (-(2**63), 2**63 - 1)


def _zero(kind):
    return {
        STR: "",
        INT: 0,
        UINT16: 0,
        BOOL: False,
        MAP: None,
        LIST: None,
        OBJECT: None,
        ANY: None,
    }[kind]


def _check(kind, key, value):
    """Return *value* converted to *kind*, or raise ProtocolError."""
    if value is None:
        return _zero(kind)
    if kind == STR:
        ok = isinstance(value, str)
    elif kind == INT:
        ok = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and _INT64[0] <= value <= _INT64[1]
        )
    elif kind == UINT16:
        ok = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value <= 65535
        )
    elif kind == BOOL:
        ok = isinstance(value, bool)
    elif kind == MAP:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    elif kind == LIST:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind == OBJECT:
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ProtocolError(
            f"field {key!r} has the wrong type for {kind}: {value!r:.60}"
        )
    return value


def _is_empty(value):
    return (
        value is None
        or value is False
        or value == 0
        or value == ""
        or (isinstance(value, (dict, list)) and not value)
    )


def _go_escape(text: str) -> str:
    # Go's encoder escapes these even inside strings; frp peers do not care,
    # but writing what frp writes keeps captures comparable.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class Message:
    """Base class: subclasses set TYPE_BYTE and FIELDS."""

    TYPE_BYTE = b""
    FIELDS = ()  # ((json_key, kind), ...) in Go struct order

    def __init__(self, **values):
        kinds = dict(self.FIELDS)
        for key in values:
            if key not in kinds:
                raise TypeError(f"{self.name} has no field {key!r}")
        for key, kind in self.FIELDS:
            if key in values:
                value = values[key]
            elif kind == OBJECT:
                value = {}
            else:
                value = _zero(kind)
            setattr(self, key, value)

    @property
    def name(self):
        return type(self).__name__

    @property
    def type_byte(self):
        return self.TYPE_BYTE

    def to_dict(self):
        """The JSON object frp would write (omitempty applied)."""
        out = {}
        for key, kind in self.FIELDS:
            value = getattr(self, key)
            if kind == OBJECT:
                out[key] = value or {}
            elif not _is_empty(value):
                out[key] = value
        return out

    def to_json_bytes(self) -> bytes:
        text = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
        return _go_escape(text).encode("utf-8")

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k, _ in self.FIELDS
        )

    def __repr__(self):
        shown = ", ".join(
            f"{k}={getattr(self, k)!r}"
            for k, _ in self.FIELDS
            if not _is_empty(getattr(self, k))
        )
        return f"{self.name}({shown})"


def _message(name, type_byte, *fields):
    cls = type(
        name,
        (Message,),
        {
            "TYPE_BYTE": type_byte,
            "FIELDS": fields,
            "__doc__": f"frp's {name} message ({type_byte.decode()!r}).",
        },
    )
    return cls


Login = _message(
    "Login",
    b"o",
    ("version", STR),
    ("hostname", STR),
    ("os", STR),
    ("arch", STR),
    ("user", STR),
    ("privilege_key", STR),
    ("timestamp", INT),
    ("run_id", STR),
    ("client_id", STR),
    ("metas", MAP),
    ("client_spec", OBJECT),
    ("pool_count", INT),
)
LoginResp = _message(
    "LoginResp", b"1", ("version", STR), ("run_id", STR), ("error", STR)
)
NewProxy = _message(
    "NewProxy",
    b"p",
    ("proxy_name", STR),
    ("proxy_type", STR),
    ("use_encryption", BOOL),
    ("use_compression", BOOL),
    ("bandwidth_limit", STR),
    ("bandwidth_limit_mode", STR),
    ("group", STR),
    ("group_key", STR),
    ("metas", MAP),
    ("annotations", MAP),
    ("remote_port", INT),
    ("custom_domains", LIST),
    ("subdomain", STR),
    ("locations", LIST),
    ("http_user", STR),
    ("http_pwd", STR),
    ("host_header_rewrite", STR),
    ("headers", MAP),
    ("response_headers", MAP),
    ("route_by_http_user", STR),
    ("sk", STR),
    ("allow_users", LIST),
    ("multiplexer", STR),
)
NewProxyResp = _message(
    "NewProxyResp", b"2", ("proxy_name", STR), ("remote_addr", STR), ("error", STR)
)
CloseProxy = _message("CloseProxy", b"c", ("proxy_name", STR))
NewWorkConn = _message(
    "NewWorkConn", b"w", ("run_id", STR), ("privilege_key", STR), ("timestamp", INT)
)
ReqWorkConn = _message("ReqWorkConn", b"r")
StartWorkConn = _message(
    "StartWorkConn",
    b"s",
    ("proxy_name", STR),
    ("src_addr", STR),
    ("dst_addr", STR),
    ("src_port", UINT16),
    ("dst_port", UINT16),
    ("error", STR),
)
NewVisitorConn = _message(
    "NewVisitorConn",
    b"v",
    ("run_id", STR),
    ("proxy_name", STR),
    ("sign_key", STR),
    ("timestamp", INT),
    ("use_encryption", BOOL),
    ("use_compression", BOOL),
)
NewVisitorConnResp = _message(
    "NewVisitorConnResp", b"3", ("proxy_name", STR), ("error", STR)
)
Ping = _message("Ping", b"h", ("privilege_key", STR), ("timestamp", INT))
Pong = _message("Pong", b"4", ("error", STR))
UDPPacket = _message("UDPPacket", b"u", ("c", STR), ("l", ANY), ("r", ANY))
NatHoleVisitor = _message(
    "NatHoleVisitor",
    b"i",
    ("transaction_id", STR),
    ("proxy_name", STR),
    ("pre_check", BOOL),
    ("protocol", STR),
    ("sign_key", STR),
    ("timestamp", INT),
    ("mapped_addrs", LIST),
    ("assisted_addrs", LIST),
)
NatHoleClient = _message(
    "NatHoleClient",
    b"n",
    ("transaction_id", STR),
    ("proxy_name", STR),
    ("sid", STR),
    ("mapped_addrs", LIST),
    ("assisted_addrs", LIST),
)
NatHoleResp = _message(
    "NatHoleResp",
    b"m",
    ("transaction_id", STR),
    ("sid", STR),
    ("protocol", STR),
    ("candidate_addrs", LIST),
    ("assisted_addrs", LIST),
    ("detect_behavior", OBJECT),
    ("error", STR),
)
NatHoleSid = _message(
    "NatHoleSid",
    b"5",
    ("transaction_id", STR),
    ("sid", STR),
    ("response", BOOL),
    ("nonce", STR),
)
NatHoleReport = _message("NatHoleReport", b"6", ("sid", STR), ("success", BOOL))

#: type byte -> message class, every type frp v1 registers.
MESSAGE_TYPES = {
    cls.TYPE_BYTE: cls
    for cls in (
        Login,
        LoginResp,
        NewProxy,
        NewProxyResp,
        CloseProxy,
        NewWorkConn,
        ReqWorkConn,
        StartWorkConn,
        NewVisitorConn,
        NewVisitorConnResp,
        Ping,
        Pong,
        UDPPacket,
        NatHoleVisitor,
        NatHoleClient,
        NatHoleResp,
        NatHoleSid,
        NatHoleReport,
    )
}


def message_from_json(type_byte: bytes, value: dict) -> Message:
    """Build the message for *type_byte* from a decoded JSON object."""
    cls = MESSAGE_TYPES[type_byte]
    # Go matches keys with Unicode case folding (ſ matches s)
    by_folded_key = {key.casefold(): (key, kind) for key, kind in cls.FIELDS}
    values = {}
    for raw_key, raw_value in value.items():
        found = by_folded_key.get(raw_key.casefold())
        if found is None:
            continue  # Go ignores unknown keys; so do we
        key, kind = found
        values[key] = _check(kind, key, raw_value)
    return cls(**values)
