# -*- test-case-name: tests.unit.test_crypto -*-
"""
Tests for labrelay.protocol.auth, .crypto, .compression and .codec: the
token's privilege key, the AES-128-CFB stream keyed from the token, the
snappy framing of use_compression, and their stacking on a work connection.
"""

import hashlib
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from labrelay.errors import ProtocolError
from labrelay.protocol.auth import check_privilege_key, privilege_key
from labrelay.protocol.codec import PayloadCodec, identity_codec
from labrelay.protocol.compression import SnappyReader, SnappyWriter
from labrelay.protocol.crypto import (
    IV_LENGTH,
    StreamDecryptor,
    StreamEncryptor,
    derive_key,
)

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from ..support import vectors

VECTOR_TOKEN = "labrelay-vector-token"
VECTOR_KEY = bytes.fromhex("cef8512ad066367af56469ab1b842836")
STREAM_HEADER = bytes.fromhex("ff060000") + b"sNaPpY"


def chunked(data: bytes, cuts) -> list:
    """*data* cut at the given positions."""
    points = sorted({c for c in cuts if 0 <= c <= len(data)})
    pieces, previous = [], 0
    for point in points + [len(data)]:
        pieces.append(data[previous:point])
        previous = point
    return pieces


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> bytes:
    """The snappy framing format's masked CRC-32C, little-endian."""
    crc = _crc32c(data)
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return masked.to_bytes(4, "little")


def uncompressed_chunk(data: bytes) -> bytes:
    """A type-0x01 chunk holding *data*."""
    return b"\x01" + (len(data) + 4).to_bytes(3, "little") + masked_crc(data) + data


class PrivilegeKeyTests(SynchronousTestCase):
    """privilege_key = md5_hex(token + decimal timestamp)."""

    def test_protocol_vectors(self):
        """frp's GetAuthKey for token ``12345678`` and for an empty one."""
        self.assertEqual(
            privilege_key("12345678", 1700000000), "3d8aac6cc09d79da303be74c311e5808"
        )
        self.assertEqual(
            privilege_key("", 1700000000), "24920decf83f6960b80f737a28eeafc1"
        )

    def test_definition(self):
        """The key is the lowercase hex MD5 of token then decimal timestamp."""
        self.assertEqual(
            privilege_key("tök", 0), hashlib.md5("tök0".encode()).hexdigest()
        )

    def test_check_accepts_right_key(self):
        """check_privilege_key accepts the key made from the same inputs."""
        self.assertTrue(
            check_privilege_key(
                "12345678", 1700000000, "3d8aac6cc09d79da303be74c311e5808"
            )
        )

    def test_check_rejects_wrong_keys(self):
        """A key for another token or timestamp, or altered, is rejected."""
        good = privilege_key("12345678", 1700000000)
        for key in (
            privilege_key("12345679", 1700000000),
            privilege_key("12345678", 1700000001),
            good.upper(),
            good[:-1],
            good + "0",
            "",
            " " + good,
            good[:-1] + "\u00e9",
        ):
            with self.subTest(key):
                self.assertFalse(check_privilege_key("12345678", 1700000000, key))

    def test_check_rejects_non_strings(self):
        """Non-string keys (as a hostile JSON body may carry) are rejected."""
        good = privilege_key("12345678", 1700000000)
        for key in (
            None,
            0,
            1700000000,
            good.encode("ascii"),
            [good],
            {"k": good},
            True,
        ):
            with self.subTest(key):
                self.assertFalse(check_privilege_key("12345678", 1700000000, key))

    def test_check_tolerates_unencodable_text(self):
        """A key holding a lone surrogate is rejected, not an exception."""
        self.assertFalse(check_privilege_key("t", 1, "\ud800" * 32))


class KeyDerivationTests(SynchronousTestCase):
    """key = PBKDF2-HMAC-SHA1(token, b"frp", 64, 16)."""

    def test_protocol_vectors(self):
        """frp's control key (golib ``crypto``, salt "frp") for token
        ``12345678`` and for an empty one."""
        self.assertEqual(
            derive_key("12345678").hex(), "b7eac3f66310824c114f56f8274fdfea"
        )
        self.assertEqual(derive_key("").hex(), "cdc9dc4c472c37331281df4c232a8407")

    def test_capture_token(self):
        """The vectors' token gives the key frp used in the captures."""
        self.assertEqual(derive_key(VECTOR_TOKEN), VECTOR_KEY)
        for scenario in vectors.SCENARIOS:
            self.assertEqual(
                vectors.messages_json(scenario)["derived_key_hex"], VECTOR_KEY.hex()
            )

    def test_salt_is_frp_not_crypto(self):
        """The salt is "frp"; golib's default "crypto" gives another key."""
        self.assertNotEqual(
            derive_key(VECTOR_TOKEN),
            hashlib.pbkdf2_hmac("sha1", VECTOR_TOKEN.encode(), b"crypto", 64, 16),
        )


class DecryptionCheckTests(SynchronousTestCase):
    """Every recorded (key, IV, ciphertext) decrypts to frp's plaintext."""

    def all_checks(self):
        found = []
        for scenario in vectors.SCENARIOS:
            found.extend((scenario, c) for c in vectors.decryption_checks(scenario))
        return found

    def test_there_are_eight_checks(self):
        """Both mux modes record control and ssh-enc checks in both directions."""
        self.assertEqual(len(self.all_checks()), 8)

    def test_decrypt_each_check(self):
        """StreamDecryptor turns each check's IV + ciphertext into its plaintext."""
        for scenario, check in self.all_checks():
            with self.subTest((scenario, check["iv_hex"])):
                key = bytes.fromhex(check["key_hex"])
                self.assertEqual(derive_key(check["token"]), key)
                decryptor = StreamDecryptor(key)
                plain = decryptor.decrypt(
                    bytes.fromhex(check["iv_hex"] + check["ciphertext_hex"])
                )
                self.assertEqual(plain.hex(), check["plaintext_hex"])

    def test_encrypt_each_check(self):
        """StreamEncryptor with the recorded IV writes frp's exact bytes."""
        for scenario, check in self.all_checks():
            with self.subTest((scenario, check["iv_hex"])):
                iv = bytes.fromhex(check["iv_hex"])
                encryptor = StreamEncryptor(bytes.fromhex(check["key_hex"]), iv=iv)
                self.assertEqual(
                    encryptor.encrypt(bytes.fromhex(check["plaintext_hex"])),
                    iv + bytes.fromhex(check["ciphertext_hex"]),
                )

    def test_wrong_salt_gives_garbage(self):
        """Decrypting a check with the "crypto"-salted key gives other bytes."""
        _, check = self.all_checks()[0]
        wrong = hashlib.pbkdf2_hmac("sha1", check["token"].encode(), b"crypto", 64, 16)
        plain = StreamDecryptor(wrong).decrypt(
            bytes.fromhex(check["iv_hex"] + check["ciphertext_hex"])
        )
        self.assertNotEqual(plain.hex(), check["plaintext_hex"])

    def test_readme_example(self):
        """vectors README §5's worked example decrypts to a ReqWorkConn frame."""
        decryptor = StreamDecryptor(VECTOR_KEY)
        self.assertEqual(
            decryptor.decrypt(
                bytes.fromhex("4459cfe3c6e4736ac60a1d4b229a94bf1bd41ac1685a3051efa02d")
            ),
            bytes.fromhex("7200000000000000027b7d"),
        )


class StreamCipherTests(SynchronousTestCase):
    """One continuous CFB-128 stream per direction, IV sent lazily once."""

    KEY = derive_key("12345678")
    IV = bytes(range(16))

    def test_iv_prepended_once(self):
        """Only the first non-empty write carries the IV."""
        encryptor = StreamEncryptor(self.KEY, iv=self.IV)
        first = encryptor.encrypt(b"abc")
        second = encryptor.encrypt(b"defg")
        self.assertEqual(first[:16], self.IV)
        self.assertEqual(len(first), 16 + 3)
        self.assertEqual(len(second), 4)
        reference = Cipher(algorithms.AES(self.KEY), CFB(self.IV)).encryptor()
        self.assertEqual(first[16:] + second, reference.update(b"abcdefg"))

    def test_iv_is_lazy(self):
        """Empty writes produce nothing and do not use up the IV."""
        encryptor = StreamEncryptor(self.KEY, iv=self.IV)
        self.assertEqual(encryptor.encrypt(b""), b"")
        self.assertEqual(encryptor.encrypt(b"x")[:16], self.IV)
        self.assertEqual(encryptor.encrypt(b""), b"")

    def test_random_iv(self):
        """Without a given IV each stream draws a fresh random one."""
        first = StreamEncryptor(self.KEY).encrypt(b"x")[:IV_LENGTH]
        second = StreamEncryptor(self.KEY).encrypt(b"x")[:IV_LENGTH]
        self.assertEqual(len(first), 16)
        self.assertNotEqual(first, second)

    def test_full_block_cfb_not_cfb8(self):
        """The cipher is CFB with 128-bit segments, not CFB8."""
        try:  # cryptography >= 43 keeps CFB8 among the "decrepit" modes
            from cryptography.hazmat.decrepit.ciphers.modes import CFB8
        except ImportError:  # older cryptography
            from cryptography.hazmat.primitives.ciphers.modes import CFB8
        data = b"0123456789abcdef0123"
        out = StreamEncryptor(self.KEY, iv=self.IV).encrypt(data)[16:]
        cfb8 = Cipher(algorithms.AES(self.KEY), CFB8(self.IV)).encryptor()
        self.assertNotEqual(out, cfb8.update(data))

    def test_decryptor_waits_for_whole_iv(self):
        """Fewer than 16 bytes give nothing until the IV is complete."""
        data = StreamEncryptor(self.KEY, iv=self.IV).encrypt(b"hello")
        decryptor = StreamDecryptor(self.KEY)
        out = b""
        for position in range(len(data)):
            piece = decryptor.decrypt(data[position : position + 1])
            if position < 16:
                self.assertEqual(piece, b"")
            out += piece
        self.assertEqual(out, b"hello")
        self.assertEqual(decryptor.decrypt(b""), b"")

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.binary(max_size=70), max_size=8),
        st.lists(st.integers(0, 600), max_size=10),
    )
    def test_arbitrary_chunking(self, writes, cuts):
        """Ciphertext cut anywhere decrypts to the concatenated writes."""
        encryptor = StreamEncryptor(self.KEY)
        wire = b"".join(encryptor.encrypt(w) for w in writes)
        decryptor = StreamDecryptor(self.KEY)
        out = b"".join(decryptor.decrypt(p) for p in chunked(wire, cuts))
        self.assertEqual(out, b"".join(writes))

    def test_wrong_key(self):
        """A reader with another key gets other bytes (there is no MAC)."""
        data = StreamEncryptor(self.KEY, iv=self.IV).encrypt(b"secret!!")
        self.assertNotEqual(
            StreamDecryptor(derive_key("other")).decrypt(data), b"secret!!"
        )


class SnappyTests(SynchronousTestCase):
    """use_compression: the snappy framing format, one frame set per write."""

    def test_stream_starts_with_identifier(self):
        """The first write begins with the sNaPpY stream identifier, once."""
        writer = SnappyWriter()
        first = writer.compress(b"hello labrelay\n")
        second = writer.compress(b"again")
        self.assertTrue(first.startswith(STREAM_HEADER))
        self.assertNotIn(b"sNaPpY", second)

    def test_empty_write(self):
        """An empty write produces no bytes."""
        self.assertEqual(SnappyWriter().compress(b""), b"")

    def test_round_trip(self):
        """SnappyWriter output decodes with SnappyReader."""
        writer, reader = SnappyWriter(), SnappyReader()
        wire = writer.compress(vectors.HELLO) + writer.compress(vectors.PATTERN)
        self.assertEqual(reader.decompress(wire), vectors.HELLO + vectors.PATTERN)

    def test_each_write_is_complete(self):
        """A reader given exactly one write's output returns all of it."""
        writer, reader = SnappyWriter(), SnappyReader()
        for data in (
            b"a",
            vectors.HELLO,
            vectors.PATTERN,
            os.urandom(70000),
            b"z" * 200000,
            b"tail",
        ):
            self.assertEqual(reader.decompress(writer.compress(data)), data)

    def test_large_write_split_in_64k_chunks(self):
        """A 1 MiB write becomes chunks of at most 64 KiB of data each."""
        data = os.urandom(1 << 20)
        wire = SnappyWriter().compress(data)
        self.assertTrue(wire.startswith(STREAM_HEADER))
        position, sizes = len(STREAM_HEADER), []
        while position < len(wire):
            kind = wire[position]
            length = int.from_bytes(wire[position + 1 : position + 4], "little")
            self.assertIn(kind, (0x00, 0x01))
            if kind == 0x01:
                sizes.append(length - 4)
            position += 4 + length
        self.assertEqual(position, len(wire))
        self.assertEqual(sum(sizes), len(data))  # random data: stored as is
        self.assertLessEqual(max(sizes), 65536)
        self.assertEqual(SnappyReader().decompress(wire), data)

    def test_compressible_data_is_compressed(self):
        """PATTERN goes out as a compressed (0x00) chunk, as frp sends it."""
        writer = SnappyWriter()
        writer.compress(b"x")
        chunk = writer.compress(vectors.PATTERN)
        self.assertEqual(chunk[0], 0x00)
        self.assertLess(len(chunk), len(vectors.PATTERN))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.binary(max_size=300), max_size=6),
        st.lists(st.integers(0, 2000), max_size=10),
    )
    def test_arbitrary_chunking(self, writes, cuts):
        """A snappy stream cut anywhere decodes to the concatenated writes."""
        writer = SnappyWriter()
        wire = b"".join(writer.compress(w) for w in writes)
        reader = SnappyReader()
        out = b"".join(reader.decompress(p) for p in chunked(wire, cuts))
        self.assertEqual(out, b"".join(writes))

    def test_foreign_uncompressed_chunk(self):
        """A hand-made uncompressed chunk with a good CRC decodes."""
        wire = STREAM_HEADER + uncompressed_chunk(b"hello")
        self.assertEqual(SnappyReader().decompress(wire), b"hello")

    def test_corrupted_crc(self):
        """A chunk whose checksum does not match is refused."""
        chunk = bytearray(uncompressed_chunk(b"hello"))
        chunk[4] ^= 0x01
        self.assertRaises(
            ProtocolError, SnappyReader().decompress, STREAM_HEADER + bytes(chunk)
        )

    def test_corrupted_data(self):
        """Flipping a data byte of a compressed chunk is refused."""
        wire = bytearray(SnappyWriter().compress(vectors.PATTERN))
        wire[-1] ^= 0xFF
        self.assertRaises(ProtocolError, SnappyReader().decompress, bytes(wire))

    def test_garbage(self):
        """Chunks that are not snappy framing are refused."""
        for wire in (
            STREAM_HEADER + b"\x02\x04\x00\x00abcd",  # reserved type
            STREAM_HEADER + b"\x00\x08\x00\x00abcdwxyz",  # bad block
            STREAM_HEADER + b"\x01\x02\x00\x00ab",  # shorter than CRC
            b"\xff\x06\x00\x00sNaPpZ",  # wrong identifier
            b"\xff\x05\x00\x00sNaPp",
        ):  # wrong identifier length
            with self.subTest(wire):
                self.assertRaises(ProtocolError, SnappyReader().decompress, wire)

    def test_skippable_and_padding_chunks(self):
        """Skippable (0x80-0xfd) and padding (0xfe) chunks are ignored."""
        wire = (
            STREAM_HEADER
            + b"\x80\x03\x00\x00abc"
            + b"\xfe\x01\x00\x00\x00"
            + uncompressed_chunk(b"ok")
        )
        self.assertEqual(SnappyReader().decompress(wire), b"ok")

    def test_oversized_complete_chunk_refused(self):
        """A chunk holding more than 64 KiB of data is refused."""
        wire = STREAM_HEADER + uncompressed_chunk(b"y" * 70000)
        self.assertRaises(ProtocolError, SnappyReader().decompress, wire)

    def test_oversized_declared_length_refused_early(self):
        """A chunk declaring 16 MiB is refused long before 1 MiB is buffered."""
        reader = SnappyReader()
        reader.decompress(STREAM_HEADER + b"\x01\xff\xff\xff")
        fed = 0
        with self.assertRaises(ProtocolError):
            while fed < (1 << 20):
                reader.decompress(b"\x00" * 4096)
                fed += 4096
        self.assertLess(fed, 128 * 1024)

    def test_random_garbage_refused_early(self):
        """Random bytes are refused before 1 MiB of them is buffered."""
        reader = SnappyReader()
        fed = 0
        with self.assertRaises(ProtocolError):
            while fed < (1 << 20):
                reader.decompress(bytes((fed + i) % 256 for i in range(4096)))
                fed += 4096
        self.assertLess(fed, 128 * 1024)


class PayloadCodecTests(SynchronousTestCase):
    """Writing is snappy then AES-CFB; reading reverses it."""

    def test_identity(self):
        """Without encryption or compression bytes pass unchanged."""
        codec = identity_codec()
        self.assertTrue(codec.is_identity)
        self.assertEqual(codec.encode(b"abc"), b"abc")
        self.assertEqual(codec.decode(b"abc"), b"abc")

    def test_flags(self):
        """Each flag alone makes a non-identity codec."""
        for flags in ((True, False), (False, True), (True, True)):
            with self.subTest(flags):
                self.assertFalse(PayloadCodec("t", *flags).is_identity)

    def test_layering_order(self):
        """Encryption is the outer layer: decrypting shows snappy framing."""
        codec = PayloadCodec(VECTOR_TOKEN, True, True)
        wire = codec.encode(vectors.HELLO)
        inner = StreamDecryptor(VECTOR_KEY).decrypt(wire)
        self.assertTrue(inner.startswith(STREAM_HEADER))
        self.assertEqual(SnappyReader().decompress(inner), vectors.HELLO)

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from([(False, False), (True, False), (False, True), (True, True)]),
        st.lists(st.binary(max_size=200), max_size=6),
        st.lists(st.integers(0, 1500), max_size=10),
    )
    def test_round_trip(self, flags, writes, cuts):
        """Whatever the flags and cuts, a peer codec recovers the writes."""
        writer, reader = PayloadCodec("tok", *flags), PayloadCodec("tok", *flags)
        wire = b"".join(writer.encode(w) for w in writes)
        out = b"".join(reader.decode(p) for p in chunked(wire, cuts))
        self.assertEqual(out, b"".join(writes))
