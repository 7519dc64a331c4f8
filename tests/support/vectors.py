"""
Readers for the real frp 0.70 captures kept in tests/data/<scenario>/.

Each scenario folder holds the raw bytes of every recorded connection
(``streams/conn-NN.{c2s,s2c}.bin``), the recording with its read chunks kept
(``streams/conn-NN.json``), for plain-mux the per-yamux-stream payloads
(``demuxed/``), and ``messages.json``, the decoded listing the tests check
labrelay's decoders against.  These helpers only read files; decoding is the
tests' job.
"""

import functools
import json

from twisted.python.filepath import FilePath

from .paths import DATA

PLAIN_NOMUX = "plain-nomux"
PLAIN_MUX = "plain-mux"
LOGIN_BAD_TOKEN = "login-bad-token"
SCENARIOS = (PLAIN_NOMUX, PLAIN_MUX, LOGIN_BAD_TOKEN)

DIRECTIONS = ("c2s", "s2c")

#: The two payloads the vectors' user client sent through every tcp proxy.
HELLO = b"hello labrelay\n"
PATTERN = bytes(i % 251 for i in range(4096))


def scenario_path(scenario: str) -> FilePath:
    """The folder of one scenario."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    return DATA.child(scenario)


def _file(scenario: str, relative: str) -> FilePath:
    path = scenario_path(scenario)
    for segment in relative.split("/"):
        path = path.child(segment)
    return path


@functools.cache
def messages_json(scenario: str) -> dict:
    """The scenario's decoded listing (messages.json), parsed."""
    return json.loads(_file(scenario, "messages.json").getContent())


def read_bytes(scenario: str, relative: str) -> bytes:
    """The content of a file given by its path inside the scenario folder."""
    return _file(scenario, relative).getContent()


def stream_bytes(scenario: str, conn_id: str, direction: str) -> bytes:
    """Everything one TCP connection carried in one direction."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    return read_bytes(scenario, f"streams/{conn_id}.{direction}.bin")


def stream_chunks(scenario: str, conn_id: str, direction: str) -> list:
    """One direction of a TCP connection as the relay's reads delivered it."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    recording = json.loads(read_bytes(scenario, f"streams/{conn_id}.json"))
    return [
        bytes.fromhex(event["hex"])
        for event in recording["chunks"]
        if event.get("dir") == direction and "hex" in event
    ]


def demuxed_bytes(
    scenario: str, stream_id: int, direction: str, conn_id: str = "conn-01"
) -> bytes:
    """The payload of one yamux stream in one direction (plain-mux only)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    return read_bytes(scenario, f"demuxed/{conn_id}.stream-{stream_id}.{direction}.bin")


def documents(scenario: str) -> list:
    """
    Every frp connection of a scenario as ``(document, raw)`` pairs.

    *document* is the control or work entry of messages.json; *raw* maps each
    direction to its bytes: the TCP stream, or for a yamux session the
    demuxed stream.
    """
    found = []
    for connection in messages_json(scenario)["connections"]:
        if connection["role"] == "yamux-session":
            for stream in connection["streams"]:
                raw = {
                    direction: read_bytes(scenario, stream["demuxed_files"][direction])
                    for direction in DIRECTIONS
                }
                found.append((stream, raw))
        else:
            raw = {
                direction: stream_bytes(scenario, connection["id"], direction)
                for direction in DIRECTIONS
            }
            found.append((connection, raw))
    return found


def decryption_checks(scenario: str) -> list:
    """Every ``decryption_check`` object anywhere in messages.json."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "decryption_check" and isinstance(item, dict):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(messages_json(scenario))
    return found
