"""
The sans-IO decoders as fuzz targets: frp frames, message bodies, the
payload codec and the INI configs, with corpora built from the captures.
"""

import tempfile

from labrelay.config import ConfigError, parse_client_config, parse_server_config
from labrelay.errors import ProtocolError
from labrelay.protocol import messages
from labrelay.protocol.codec import PayloadCodec
from labrelay.protocol.compression import MAX_CHUNK
from labrelay.protocol.crypto import IV_LENGTH
from labrelay.protocol.framing import (
    HEADER_LENGTH,
    MAX_BODY_LENGTH,
    V2_MAGIC,
    MessageParser,
    decode_body,
    encode_message,
)

from .. import paths, vectors
from .core import RUN_ID, TOKEN, Target, bound, chunked, label

TYPE_BYTES = sorted(messages.MESSAGE_TYPES)


def frame(type_byte: bytes, body: bytes) -> bytes:
    return type_byte + len(body).to_bytes(8, "big") + body


def captured_messages():
    """(direction, type byte, raw JSON, encrypted) of every captured frame."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for direction in vectors.DIRECTIONS:
                side = node.get(direction)
                if isinstance(side, dict) and "messages" in side:
                    for m in side["messages"]:
                        found.append(
                            (
                                direction,
                                m["type"].encode(),
                                m["raw_json"].encode("utf-8"),
                                bool(m.get("encrypted")),
                            )
                        )
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for scenario in vectors.SCENARIOS:
        walk(vectors.messages_json(scenario)["connections"])
    return found


def _captured_run_ids() -> set:
    return {
        m[2].split(b'"run_id":"')[1][:16]
        for m in captured_messages()
        if b'"run_id":"' in m[2]
    }


def with_run_id(data: bytes) -> bytes:
    """*data* with every captured run_id replaced by :data:`RUN_ID`."""
    for run_id in _captured_run_ids():
        data = data.replace(run_id, RUN_ID.encode())
    return data


def client_streams(scenario: str) -> list:
    index = vectors.messages_json(scenario)
    return [
        vectors.stream_bytes(scenario, c["id"], "c2s") for c in index["connections"]
    ]


class FramingTarget(Target):
    """MessageParser: frames in, messages or ProtocolError out."""

    name = "framing"
    tokens = tuple(TYPE_BYTES) + (V2_MAGIC, b"\x00" * 8, b"{}", b'{"a":')

    def corpus(self):
        frames = [frame(t, body) for _, t, body, _ in captured_messages()]
        return (
            frames
            + [b"".join(frames[:6]), V2_MAGIC]
            + [
                s
                for sc in (vectors.PLAIN_NOMUX, vectors.LOGIN_BAD_TOKEN)
                for s in client_streams(sc)
            ]
        )

    def run(self, data, cuts):
        parser = MessageParser()
        names = set()
        try:
            for piece in chunked(data, cuts):
                parser.feed(piece)
                names.update(m.name for m in parser.messages())
                bound(
                    parser.buffered < HEADER_LENGTH + MAX_BODY_LENGTH,
                    f"parser holds {parser.buffered} undecoded bytes",
                )
        except ProtocolError as e:
            return label(e)
        return "ok: " + ",".join(sorted(names))


class MessagesTarget(Target):
    """decode_body / message_from_json: the first byte picks the type, the
    rest is the JSON body; a decoded message re-encodes to itself."""

    name = "messages"
    tokens = (
        b"null",
        b"true",
        b"1e400",
        b"-1",
        b"[]",
        b"{}",
        b'"\\ud800"',
        b'"Version":',
        b'"client_spec":',
        b"9223372036854775808",
    )

    def corpus(self):
        return [
            bytes([TYPE_BYTES.index(t)]) + body for _, t, body, _ in captured_messages()
        ]

    def run(self, data, cuts):
        if not data:
            return "empty"
        type_byte = TYPE_BYTES[data[0] % len(TYPE_BYTES)]
        try:
            message = decode_body(type_byte, data[1:])
        except ProtocolError as e:
            return label(e)
        try:
            wire = encode_message(message)
        except ProtocolError:
            return f"{message.name}: re-encoded over the length limit"
        try:
            again = decode_body(type_byte, wire[HEADER_LENGTH:])
        except ProtocolError as e:
            raise AssertionError(
                f"{message!r} re-encodes to {wire!r}, which fails: {e}"
            )
        if again != message:
            raise AssertionError(f"{message!r} re-decodes as {again!r}")
        return f"{message.name}: round trip"


class CodecTarget(Target):
    """PayloadCodec.decode of arbitrary bytes; the first byte's two low bits
    pick use_encryption and use_compression."""

    name = "codec"
    tokens = (b"\xff\x06\x00\x00sNaPpY", b"\x00", b"\x01", b"\xfe", b"\x80")

    def corpus(self):
        out = []
        for flags in range(4):
            writer = PayloadCodec(TOKEN, bool(flags & 1), bool(flags & 2))
            wire = b"".join(
                writer.encode(w) for w in (vectors.HELLO, vectors.PATTERN, b"x" * 70000)
            )
            out += [bytes([flags]) + wire[:3000], bytes([flags]) + wire]
        return out

    def run(self, data, cuts):
        if not data:
            return "empty"
        encrypted, compressed = bool(data[0] & 1), bool(data[0] & 2)
        codec = PayloadCodec(TOKEN, encrypted, compressed)
        total_in = total_out = 0
        try:
            for piece in chunked(data[1:], cuts):
                total_in += len(piece)
                total_out += len(codec.decode(piece))
                reader = codec._reader
                held = reader._decompressor.remains if reader else None
                bound(
                    held is None or len(held) <= MAX_CHUNK + 10,
                    f"snappy reader holds {len(held or b'')} bytes",
                )
                # snappy expands at most ~21x; one chunk yields <= 64 KiB
                bound(
                    total_out <= 24 * total_in + 65536,
                    f"{total_in} bytes in decoded to {total_out} out",
                )
        except ProtocolError as e:
            return f"flags={data[0] & 3} {label(e)}"
        if not compressed:
            expected = total_in - IV_LENGTH if encrypted else total_in
            bound(total_out == max(expected, 0), "CFB changed the length")
        return f"flags={data[0] & 3} ok"


class ConfigTarget(Target):
    """parse_server_config and parse_client_config: only ConfigError."""

    name = "config"
    tokens = (
        b"\n[common]\n",
        b"\n[x]\n",
        b" = ",
        b"{{ .Envs.X }}",
        b"{{",
        b'"""',
        b"\\\n",
        b"range:",
        b"-",
        b",",
        b"type = http\n",
        b"remote_port = ",
        b"true",
        b"0x1f",
        b"\n#",
        b"[",
        b"]",
    )

    def __init__(self):
        self._base = None

    def corpus(self):
        found = []
        for path in paths.DATA.globChildren("*") + [paths.CONF]:
            for ini in path.globChildren("*.ini"):
                found.append(ini.getContent())
        return found

    def run(self, data, cuts):
        # no file system: includes would read whatever a pattern names
        text = data.decode("utf-8", "replace").replace("includes", "include_s")
        if self._base is None:
            self._base = tempfile.mkdtemp(prefix="labrelay-fuzz-config-")
        outcomes = []
        for parse, kwargs in (
            (parse_server_config, {}),
            (parse_client_config, {"base_dir": self._base}),
        ):
            try:
                parse(text, environ={"X": "1"}, **kwargs)
                outcomes.append("ok")
            except ConfigError as e:
                bound("\n" not in str(e), f"multi-line ConfigError {e!r}")
                outcomes.append(label(e))
        return " | ".join(outcomes)
