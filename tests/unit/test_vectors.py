# -*- test-case-name: tests.unit.test_vectors -*-
"""
Decode the real frp 0.70 captures in tests/data with labrelay's sans-IO
codec (MessageParser, StreamDecryptor, PayloadCodec) and check the result
against the listing recorded with them (messages.json).
"""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from labrelay.protocol import messages as m
from labrelay.protocol.auth import check_privilege_key
from labrelay.protocol.codec import PayloadCodec
from labrelay.protocol.crypto import StreamDecryptor, derive_key
from labrelay.protocol.framing import MessageParser, encode_message

from ..support import vectors

#: What the local HTTP service answered (vectors README §1 / §4.3).
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 32\r\n"
    b"X-Vector: labrelay\r\nConnection: close\r\n\r\n"
    b"hello from jupyter via labrelay\n"
)

#: The user's request as frps's reverse proxy rewrote it (README §4.3).
HTTP_REQUEST = (
    b"GET /lab?x=1 HTTP/1.1\r\nHost: jupyter.web.example.test\r\n"
    b"User-Agent: labrelay-vector/1\r\nAccept: */*\r\n"
    b"X-Forwarded-For: 127.0.0.1\r\n"
    b"X-Forwarded-Host: jupyter.web.example.test\r\n"
    b"X-Forwarded-Proto: http\r\nAccept-Encoding: gzip\r\n\r\n"
)

BAD_TOKEN_ERROR = "token in login doesn't match token from configuration"


def decode_control(chunks, token):
    """
    Decode one direction of a control connection as labrelay would: the
    first frame in plaintext, everything after it through AES-CFB.

    :return: (messages, bytes left undecoded after the last frame)
    """
    plain = MessageParser()
    inner = MessageParser()
    decryptor = StreamDecryptor(derive_key(token))
    found = []
    encrypted = False
    for chunk in chunks:
        if not encrypted:
            plain.feed(chunk)
            first = plain.next_message()
            if first is None:
                continue
            found.append(first)
            encrypted = True
            chunk = plain.take_rest()
        inner.feed(decryptor.decrypt(chunk))
        found.extend(inner.messages())
    return found, (inner.buffered if encrypted else plain.buffered)


def decode_work(chunks, codec_for):
    """
    Decode one direction of a work connection: a plaintext frame, then the
    payload through the codec *codec_for(first_message)* picks.

    :return: (messages, payload bytes)
    """
    plain = MessageParser()
    codec = None
    found = []
    payload = bytearray()
    for chunk in chunks:
        if codec is None:
            plain.feed(chunk)
            first = plain.next_message()
            if first is None:
                continue
            found.append(first)
            codec = codec_for(first)
            chunk = plain.take_rest()
        payload += codec.decode(chunk)
    if codec is None:
        assert plain.buffered == 0, "partial first frame"
    return found, bytes(payload)


def pieces(data: bytes, size: int) -> list:
    """*data* in pieces of *size* bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


class _ScenarioMixin:
    """Decode every frp connection of ``SCENARIO`` and compare."""

    SCENARIO = None

    def chunkings(self, document, raw, direction):
        """The ways to cut one direction's bytes for feeding the decoders."""
        data = raw[direction]
        ways = {"whole": [data], "7-byte pieces": pieces(data, 7)}
        if "id" in document:  # a TCP connection: the relay's real reads
            chunks = vectors.stream_chunks(self.SCENARIO, document["id"], direction)
            self.assertEqual(b"".join(chunks), data)
            ways["recorded reads"] = chunks
        return ways

    def assertMessagesEqual(self, decoded, expected):
        """Decoded messages match messages.json: type, name, body, bytes."""
        self.assertEqual(len(decoded), len(expected))
        for message, entry in zip(decoded, expected):
            self.assertEqual(message.type_byte, entry["type"].encode())
            self.assertEqual(message.name, entry["name"])
            self.assertEqual(message.to_dict(), entry["body"])
            self.assertEqual(
                message, m.message_from_json(entry["type"].encode(), entry["body"])
            )
            frame = encode_message(message)
            self.assertEqual(len(frame), entry["frame_len"])
            self.assertEqual(frame[9:], entry["raw_json"].encode("utf-8"))

    def decode_scenario(self, chunking="whole"):
        """
        Decode the whole scenario.

        :return: a list of (document, {direction: messages}, {direction:
            payload or None}) in messages.json order, plus the control's
            proxies by name.
        """
        data = vectors.messages_json(self.SCENARIO)
        documents = vectors.documents(self.SCENARIO)
        results = []
        proxies = {}
        # Controls first: their NewProxy messages say how to unwrap payloads.
        for document, raw in documents:
            if document["role"] != "control":
                continue
            decoded, payloads = {}, {"c2s": None, "s2c": None}
            tokens = {"c2s": data["client_token"], "s2c": data["server_token"]}
            for direction in vectors.DIRECTIONS:
                chunks = self.chunkings(document, raw, direction)[chunking]
                found, tail = decode_control(chunks, tokens[direction])
                self.assertEqual(tail, 0)
                decoded[direction] = found
            for message in decoded["c2s"]:
                if isinstance(message, m.NewProxy):
                    proxies[message.proxy_name] = message
            results.append((document, decoded, payloads))

        def codec_for_start(message):
            self.assertIsInstance(message, m.StartWorkConn)
            proxy = proxies[message.proxy_name]
            return PayloadCodec(
                data["server_token"], proxy.use_encryption, proxy.use_compression
            )

        for document, raw in documents:
            if document["role"] != "work":
                continue
            decoded, payloads = {}, {}
            chunks = self.chunkings(document, raw, "s2c")[chunking]
            decoded["s2c"], payloads["s2c"] = decode_work(chunks, codec_for_start)
            # frpc learns the proxy from StartWorkConn, then unwraps its own
            # direction the same way.
            start = decoded["s2c"][0] if decoded["s2c"] else None

            def codec_for_new(message, start=start):
                self.assertIsInstance(message, m.NewWorkConn)
                if start is None:
                    return PayloadCodec("", False, False)
                return codec_for_start(start)

            chunks = self.chunkings(document, raw, "c2s")[chunking]
            decoded["c2s"], payloads["c2s"] = decode_work(chunks, codec_for_new)
            results.append((document, decoded, payloads))
        return results, proxies

    def check_scenario(self, chunking):
        results, _ = self.decode_scenario(chunking)
        self.assertEqual(len(results), len(vectors.documents(self.SCENARIO)))
        for document, decoded, payloads in results:
            for direction in vectors.DIRECTIONS:
                expected = document[direction]
                with self.subTest(
                    (document.get("id"), document.get("stream_id"), direction)
                ):
                    self.assertMessagesEqual(decoded[direction], expected["messages"])
                    if "payload" in expected:
                        payload = payloads[direction]
                        self.assertEqual(len(payload), expected["payload"]["length"])
                        self.assertEqual(
                            hashlib.sha256(payload).hexdigest(),
                            expected["payload"]["sha256"],
                        )
                    elif payloads[direction] is not None:
                        self.assertEqual(payloads[direction], b"")

    def test_messages_whole(self):
        """Each direction fed in one piece decodes to messages.json's messages and payloads."""
        self.check_scenario("whole")

    def test_messages_in_small_pieces(self):
        """Each direction fed in 7-byte pieces decodes the same way."""
        self.check_scenario("7-byte pieces")

    def test_login_verifies_against_client_token(self):
        """The Login's privilege key is md5(client token + timestamp)."""
        results, _ = self.decode_scenario()
        data = vectors.messages_json(self.SCENARIO)
        login = results[0][1]["c2s"][0]
        self.assertIsInstance(login, m.Login)
        self.assertTrue(
            check_privilege_key(
                data["client_token"], login.timestamp, login.privilege_key
            )
        )
        self.assertEqual(login.version, "0.70.0")
        self.assertEqual(login.client_spec, {})
        self.assertEqual(login.pool_count, 1)


class _SuccessfulScenarioMixin(_ScenarioMixin):
    """Checks that hold for the two scenarios where login succeeds."""

    def test_login_verifies_against_server_token(self):
        """The server accepts the Login's key with its own token."""
        results, _ = self.decode_scenario()
        login = results[0][1]["c2s"][0]
        self.assertTrue(
            check_privilege_key(
                vectors.messages_json(self.SCENARIO)["server_token"],
                login.timestamp,
                login.privilege_key,
            )
        )

    def test_proxies_registered(self):
        """The control carries the three NewProxy messages of README §4.2."""
        _, proxies = self.decode_scenario()
        self.assertEqual(
            proxies,
            {
                "jupyter": m.NewProxy(
                    proxy_name="jupyter", proxy_type="http", subdomain="jupyter"
                ),
                "ssh": m.NewProxy(
                    proxy_name="ssh", proxy_type="tcp", remote_port=27022
                ),
                "ssh-enc": m.NewProxy(
                    proxy_name="ssh-enc",
                    proxy_type="tcp",
                    use_encryption=True,
                    use_compression=True,
                    remote_port=27023,
                ),
            },
        )

    def test_run_id_carried_by_work_connections(self):
        """Every NewWorkConn carries the run_id of the LoginResp."""
        results, _ = self.decode_scenario()
        login_resp = results[0][1]["s2c"][0]
        self.assertIsInstance(login_resp, m.LoginResp)
        self.assertEqual(len(login_resp.run_id), 16)
        self.assertEqual(login_resp.error, "")
        work = [decoded["c2s"][0] for _, decoded, _ in results[1:]]
        self.assertEqual(len(work), 4)
        for message in work:
            self.assertEqual(message, m.NewWorkConn(run_id=login_resp.run_id))

    def test_req_work_conn_count(self):
        """frps asked for four work connections: one at login, one per user."""
        results, _ = self.decode_scenario()
        requests = [x for x in results[0][1]["s2c"] if isinstance(x, m.ReqWorkConn)]
        self.assertEqual(len(requests), 4)

    def payload_of(self, proxy_name, direction):
        results, _ = self.decode_scenario()
        for document, _, payloads in results:
            if document.get("proxy_name") == proxy_name:
                return payloads[direction]
        raise AssertionError(f"no work connection for {proxy_name}")

    def test_tcp_payloads(self):
        """ssh and ssh-enc carried HELLO then PATTERN both ways, unwrapped."""
        for proxy_name in ("ssh", "ssh-enc"):
            for direction in vectors.DIRECTIONS:
                with self.subTest((proxy_name, direction)):
                    self.assertEqual(
                        self.payload_of(proxy_name, direction),
                        vectors.HELLO + vectors.PATTERN,
                    )

    def test_http_payloads(self):
        """The jupyter work connection carries README §4.3's exact texts."""
        self.assertEqual(self.payload_of("jupyter", "s2c"), HTTP_REQUEST)
        self.assertEqual(self.payload_of("jupyter", "c2s"), HTTP_RESPONSE)

    def test_encrypted_work_payload_is_not_plain(self):
        """On the wire, ssh-enc's payload is neither HELLO nor PATTERN."""
        for document, raw in vectors.documents(self.SCENARIO):
            if document.get("proxy_name") == "ssh-enc":
                wire = raw["c2s"][38:]
                self.assertNotIn(vectors.HELLO, wire)
                self.assertEqual(wire[:16].hex(), document["c2s"]["iv_hex"])
                return
        self.fail("no ssh-enc work connection")


class PlainNoMuxTests(_SuccessfulScenarioMixin, SynchronousTestCase):
    """plain-nomux: every frp connection is its own TCP connection."""

    SCENARIO = vectors.PLAIN_NOMUX

    def test_messages_in_recorded_reads(self):
        """Fed in the relay's recorded reads, the streams decode the same way."""
        self.check_scenario("recorded reads")

    def test_ping_pong(self):
        """With mux off frpc pings at once and frps answers with Pong."""
        results, _ = self.decode_scenario()
        control = results[0][1]
        self.assertEqual(control["c2s"][-1], m.Ping())
        self.assertIn(m.Pong(), control["s2c"])

    def test_first_reads_mix_layers(self):
        """The relay's first s2c read holds LoginResp and ciphertext together."""
        first = vectors.stream_chunks(self.SCENARIO, "conn-01", "s2c")[0]
        parser = MessageParser()
        parser.feed(first)
        self.assertIsInstance(parser.next_message(), m.LoginResp)
        self.assertEqual(
            StreamDecryptor(
                derive_key(vectors.messages_json(self.SCENARIO)["server_token"])
            ).decrypt(parser.take_rest()),
            encode_message(m.ReqWorkConn()),
        )

    def test_decryption_checks_match_files(self):
        """Each decryption check's IV and ciphertext sit at its offsets in the .bin files."""
        data = vectors.messages_json(self.SCENARIO)
        count = 0
        for connection in data["connections"]:
            for direction in vectors.DIRECTIONS:
                check = connection[direction].get("decryption_check")
                if check is None:
                    continue
                wire = vectors.stream_bytes(self.SCENARIO, connection["id"], direction)
                iv = bytes.fromhex(check["iv_hex"])
                ct = bytes.fromhex(check["ciphertext_hex"])
                at = check["iv_wire_offset"]
                self.assertEqual(wire[at : at + 16], iv)
                at = check["ciphertext_wire_offset"]
                self.assertEqual(wire[at : at + len(ct)], ct)
                count += 1
        self.assertEqual(count, 4)


class PlainMuxTests(_SuccessfulScenarioMixin, SynchronousTestCase):
    """plain-mux: the demuxed yamux streams carry the frp connections."""

    SCENARIO = vectors.PLAIN_MUX

    def test_no_heartbeat(self):
        """With tcp_mux on, frp 0.70 sends no Ping and gets no Pong."""
        results, _ = self.decode_scenario()
        control = results[0][1]
        self.assertEqual(
            [
                x
                for x in control["c2s"] + control["s2c"]
                if isinstance(x, (m.Ping, m.Pong))
            ],
            [],
        )

    def test_control_is_stream_one(self):
        """Stream 1 is the control stream; work streams are 3, 5, 7 and 9."""
        results, _ = self.decode_scenario()
        self.assertEqual([d["stream_id"] for d, _, _ in results], [1, 3, 5, 7, 9])
        self.assertIsInstance(results[0][1]["c2s"][0], m.Login)


class LoginBadTokenTests(_ScenarioMixin, SynchronousTestCase):
    """login-bad-token: frps refuses a Login made with the wrong token."""

    SCENARIO = vectors.LOGIN_BAD_TOKEN

    def test_messages_in_recorded_reads(self):
        """Fed in the relay's recorded reads, the streams decode the same way."""
        self.check_scenario("recorded reads")

    def test_login_fails_server_token(self):
        """The Login's key does not verify against the server's token."""
        results, _ = self.decode_scenario()
        login = results[0][1]["c2s"][0]
        data = vectors.messages_json(self.SCENARIO)
        self.assertNotEqual(data["client_token"], data["server_token"])
        self.assertFalse(
            check_privilege_key(
                data["server_token"], login.timestamp, login.privilege_key
            )
        )

    def test_login_resp_error(self):
        """The plaintext LoginResp carries frps's exact error and no run_id."""
        results, _ = self.decode_scenario()
        self.assertEqual(
            results[0][1]["s2c"], [m.LoginResp(version="0.70.0", error=BAD_TOKEN_ERROR)]
        )

    def test_nothing_after_the_handshake(self):
        """Neither side sent an IV or any byte after Login and LoginResp."""
        for direction, length in (("c2s", 179), ("s2c", 93)):
            wire = vectors.stream_bytes(self.SCENARIO, "conn-01", direction)
            parser = MessageParser()
            parser.feed(wire)
            self.assertIsNotNone(parser.next_message())
            self.assertEqual(len(wire), length)
            self.assertEqual(parser.take_rest(), b"")
