"""The age v1 format, byte for byte: C2SP testkit vectors, our output's layout, the STREAM
rules for final chunks, and every header malformation the spec says to reject."""

import hashlib
import pickle
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backup_addon.crypto.age import (
    AgeError,
    AgeHeaderError,
    AgeHeaderMacError,
    AgePayloadError,
    Identity,
    NoMatchingIdentity,
    decrypt_bytes,
    encrypt_bytes,
)
from tests.crypto.helpers import (
    CHUNK,
    ENC_CHUNK,
    b64,
    build,
    chunk_spans,
    decrypt_outcome,
    header_length,
    header_with_mac,
    kit_random,
    run_decrypt,
    seal_chunks,
    stanza_lines,
    x25519_stanza,
)

# --- C2SP age testkit vectors (https://age-encryption.org/testkit) ----------------------------
#
# A few vectors from the testkit (0BSD/CC0), re-encoded here: the textual header exactly as in
# the vector, and the identity as its raw 32-byte X25519 scalar (these are the testkit's
# published test keys). The binary part of each vector (nonce and payload) is recomputed with
# the testkit's own recipe: its "randomness" is a ChaCha20 keystream (see helpers), the file
# key is "YELLOW SUBMARINE" and the payload is the final chunk "age".

TESTKIT_FILE_KEY = b"YELLOW SUBMARINE"
TESTKIT_PAYLOAD_SHA256 = "013f54400c82da08037759ada907a8b864e97de81c088a182062c4b5622fd2ab"
KEY_A = "36dcec3f5f24739a0c8b36cbb4ffa25729a94a51d41fb205a37419fe7f5adb2a"  # testkit identity (2022)
KEY_B = "ca1626252c53cf1a4dc46695e7fcc46594cb4ccadedb6712dfda0753f3ae355e"  # testkit identity (current)
KEY_C = "ac5d3f3706e55071d3a604204697b9091b35c6e687dd00da3ac379ac9f742c21"  # x25519_no_match's identity

TESTKIT = {
    "x25519": (
        KEY_A,
        "success",
        32,
        """age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- Vn+54jqiiUCE+WZcEVY3f1sqHjlu/z1LCQ/T7Xm7qI0
""",
    ),
    "x25519_grease": (
        KEY_A,
        "success",
        32,
        """age-encryption.org/v1
-> grease

-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> grease

--- 7NLrfbRUZt6qK0pdtARUf59dHwo12ReldjJKjMlbE3I
""",
    ),
    "x25519_multiple_recipients": (
        KEY_A,
        "success",
        96,
        """age-encryption.org/v1
-> X25519 ajtqAvDEkVNr2B7zUOtq2mAQXDSBlNrVAuM/dKb5sT4
0evrK/HQXVsQ4YaDe+659l5OQzvAzD2ytLGHQLQiqxg
-> X25519 0qC7u6AbLxuwnM8tPFOWVtWZn/ZZe7z7gcsP5kgA0FI
T/PZg76MmVt2IaLntrxppzDnzeFDYHsHFcnTnhbRLQ8
--- 7W07ef2PhsTAl74pn+9vSj/Xzukwa6SuTqMc16cdBk0
""",
    ),
    "stanza_valid_characters": (
        KEY_A,
        "success",
        32,
        """age-encryption.org/v1
-> !"#$%&' ()*+,-./ 01234567 89:;<=>? @ABCDEFG HIJKLMNO

-> PQRSTUVW XYZ[\\]^_ `abcdefg hijklmno pqrstuvw xyz{|}~

-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- x538z9xJq9XEK1aTTTv80aWDVvVdROvaXn2tpqXPC8g
""",
    ),
    "stanza_empty_last_line": (
        KEY_A,
        "success",
        32,
        """age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB

--- +3PC416gxa7Mk7WxpX0kb6DVfSuCun0niGre+G4bZhE
""",
    ),
    "stanza_missing_final_line": (
        KEY_A,
        "header failure",
        32,
        """age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- GRjUy1ShNhFoV3cQikdtUZqDeDEZSrbtNXUgDtDbwC8
""",
    ),
    "stanza_not_canonical": (
        KEY_A,
        "header failure",
        32,
        """age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB
QUF
--- nQM2VCzmNLPrUurNWN+SW9wVp/9uTMQ/6CTUM7l8c84
""",
    ),
    "hmac_not_canonical": (
        KEY_B,
        "header failure",
        32,
        """age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE
--- WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNh
""",
    ),
    # The same header with the canonical encoding of that MAC (the last character is the one
    # the testkit bumped to make it non-canonical): it must decrypt.
    "hmac_canonical (derived from hmac_not_canonical)": (
        KEY_B,
        "success",
        32,
        """age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE
--- WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNg
""",
    ),
    "x25519_low_order": (
        KEY_B,
        "header failure",
        0,
        """age-encryption.org/v1
-> X25519 X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEdc
3E0NpFans/m0WLWF7+54ZBdNj3iqQqpraGDFiaRkvBA
--- sXw327YMT1/ULXe+ZyRMbMY0Z2jnWHGgI9j1we6yQ8A
""",
    ),
    "x25519_no_match": (
        KEY_C,
        "no match",
        32,
        """age-encryption.org/v1
-> X25519 ajtqAvDEkVNr2B7zUOtq2mAQXDSBlNrVAuM/dKb5sT4
HUKtz0R2j5Bl2ER7HhAZrURikCFpiIjNa0KjHcjbAGU
--- rrpTlvKEKrK3EqhoOPJeP1KE8O1d2arrRez77mwekRc
""",
    ),
}

EXPECTED_ERROR = {"header failure": AgeHeaderError, "no match": NoMatchingIdentity}


def kit_file(header: str, nonce_offset: int, chunks=((b"age", True),)) -> bytes:
    return header.encode() + seal_chunks(TESTKIT_FILE_KEY, kit_random(16, nonce_offset), chunks)


def test_kit_randomness_model_matches_the_vectors():
    # The ephemeral shares in the vectors are X25519(keystream[0:32]) and X25519(keystream[64:96]),
    # which confirms where the nonces come from.
    stream = kit_random(96)
    assert b64(X25519PrivateKey.from_private_bytes(stream[:32]).public_key().public_bytes_raw()) == (
        "TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc"
    )
    assert b64(X25519PrivateKey.from_private_bytes(stream[64:96]).public_key().public_bytes_raw()) == (
        "0qC7u6AbLxuwnM8tPFOWVtWZn/ZZe7z7gcsP5kgA0FI"
    )


@pytest.mark.parametrize("name", list(TESTKIT))
async def test_testkit_vector(name):
    key, expect, nonce_offset, header = TESTKIT[name]
    identity = Identity.from_private_bytes(bytes.fromhex(key))
    data = kit_file(header, nonce_offset)
    outcome = await decrypt_outcome(data, [identity], sizes=[7, 300, 1])
    if expect == "success":
        assert outcome.error is None
        assert hashlib.sha256(outcome.released).hexdigest() == TESTKIT_PAYLOAD_SHA256
        assert decrypt_bytes(data, [identity]) == b"age"
    else:
        assert isinstance(outcome.error, EXPECTED_ERROR[expect]), outcome.error
        assert outcome.released == b""


# --- testkit-style STREAM vectors, on the x25519 vector's header -------------------------------


def x25519_vector_with(chunks) -> bytes:
    return kit_file(TESTKIT["x25519"][3], 32, chunks)


KEY_A_IDENTITY = Identity.from_private_bytes(bytes.fromhex(KEY_A))
FULL = bytes(CHUNK)
ONES = b"\x01" * CHUNK


@pytest.mark.parametrize(
    ("chunks", "released", "error"),
    [
        ([(b"", True)], b"", None),  # an empty payload is one empty final chunk
        ([(FULL, True)], FULL, None),  # a full final chunk is fine
        ([(FULL, False), (ONES, True)], FULL + ONES, None),  # ... also after full chunks
        ([(FULL, False), (b"x", True)], FULL + b"x", None),
        ([(FULL, False), (b"", True)], FULL, "the final chunk is empty"),  # stream_last_chunk_empty
        ([(FULL, False)], FULL, "it ends before the final chunk"),  # stream_no_final (full chunk)
        ([(b"age", False)], b"", "the final chunk failed authentication"),  # stream_no_final (short)
        ([(FULL, True), (b"x", True)], b"", "unexpected data after the end"),  # stream_trailing_garbage
        ([(b"age", True), (b"x", True)], b"", "the final chunk failed"),
        ([(FULL, False), (FULL, True), (FULL, True)], FULL, "unexpected data after the end"),
        ([(FULL, False), (b"age", False), (b"x", True)], FULL, "the final chunk failed authentication"),
        ([(FULL, False), (b"x", True), (FULL, True)], FULL, "a chunk failed authentication"),
        ([], b"", "it ends before the final chunk"),  # stream_no_chunks
    ],
)
async def test_stream_final_chunk_rules(chunks, released, error):
    outcome = await decrypt_outcome(x25519_vector_with(chunks), [KEY_A_IDENTITY])
    assert outcome.released == released
    if error is None:
        assert outcome.error is None
    else:
        assert isinstance(outcome.error, AgePayloadError)
        assert error in str(outcome.error)
        assert outcome.error.offset == len(released)


async def test_missing_or_short_nonce_is_a_payload_error():
    header = TESTKIT["x25519"][3].encode()
    for tail in (b"", b"\x00" * 15):
        outcome = await decrypt_outcome(header + tail, [KEY_A_IDENTITY])
        assert isinstance(outcome.error, AgePayloadError)
        assert "ends before the encrypted content starts" in str(outcome.error)
        assert outcome.error.offset == 0


# --- our own output --------------------------------------------------------------------------


HEADER_RE = re.compile(
    rb"age-encryption\.org/v1\n"
    rb"(?:-> X25519 [A-Za-z0-9+/]{43}\n[A-Za-z0-9+/]{43}\n)+"
    rb"--- [A-Za-z0-9+/]{43}\n\Z"
)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK])
def test_our_layout(size):
    identities = [Identity.generate() for _ in range(3)]
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = encrypt_bytes(plaintext, [i.recipient() for i in identities])
    head = header_length(data)
    assert HEADER_RE.match(data[:head])
    assert data[:head].count(b"-> X25519 ") == 3
    chunks = max(1, -(-size // CHUNK))
    assert len(data) == head + 16 + size + 16 * chunks
    spans = chunk_spans(data)
    assert len(spans) == chunks
    assert all(end - start == ENC_CHUNK for start, end in spans[:-1])
    for identity in identities:
        assert decrypt_bytes(data, [identity]) == plaintext
    assert data != encrypt_bytes(plaintext, [i.recipient() for i in identities])  # fresh key and nonce


def test_each_stanza_opens_only_with_its_identity():
    first, second, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    data = encrypt_bytes(b"secret", [first.recipient(), second.recipient()])
    assert decrypt_bytes(data, [stranger, second]) == b"secret"
    with pytest.raises(NoMatchingIdentity) as info:
        decrypt_bytes(data, [stranger])
    assert str(info.value) == (
        "this backup was encrypted for a different key; use the emergency kit that belongs to it"
    )


# --- unknown stanzas are skipped, but authenticated -----------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (stanza_lines("example.com/enigma", ["arg1", "arg2"], bytes(range(200))), ""),
        ("", stanza_lines("grease-!#$", [], b"")),
        (stanza_lines("scrypt-like", ["x"], bytes(48)), stanza_lines("mlkem768x25519", ["QUJD"], bytes(96))),
        (stanza_lines("X25519-not", ["AAAA"], bytes(32)), ""),
    ],
)
def test_unknown_stanzas_are_skipped(before, after):
    identity = Identity.generate()
    built = build(identity.recipient().public_bytes, [(b"hello", True)], before=before, extra_stanzas=after)
    assert decrypt_bytes(built.data, [identity]) == b"hello"
    # ...but they are covered by the header MAC.
    head, _, tail = built.header.rpartition(b"-> " if after else b"-> X25519")
    tampered = built.header.replace(b"-> ", b"-> z", 1) if before else head + b"-> z" + tail
    with pytest.raises(AgeHeaderMacError):
        decrypt_bytes(tampered + built.payload, [identity])


def test_other_x25519_stanzas_are_tried_and_skipped():
    identity, other = Identity.generate(), Identity.generate()
    key = bytes(range(16))
    stanzas = x25519_stanza(other.recipient().public_bytes, key) + x25519_stanza(
        identity.recipient().public_bytes, key
    )
    data = header_with_mac(key, stanzas) + seal_chunks(key, bytes(16), [(b"two", True)])
    assert decrypt_bytes(data, [identity]) == b"two"
    assert decrypt_bytes(data, [other]) == b"two"


def test_header_changes_are_detected():
    identity = Identity.generate()
    recipient = identity.recipient().public_bytes
    built = build(recipient, [(b"payload", True)])
    grease = stanza_lines("grease", [], b"")
    added = built.header.replace(b"---", grease.encode() + b"---") + built.payload
    with pytest.raises(AgeHeaderMacError, match="modified or damaged"):
        decrypt_bytes(added, [identity])
    # A stanza removed from a header: the MAC no longer matches.
    other = Identity.generate().recipient().public_bytes
    two = build(recipient, [(b"payload", True)], extra_stanzas=x25519_stanza(other, bytes(range(16))))
    head = header_length(two.data)
    lines = two.data[:head].split(b"\n")
    removed = b"\n".join(lines[:3] + lines[5:]) + two.data[head:]
    with pytest.raises(AgeHeaderMacError):
        decrypt_bytes(removed, [identity])
    # A valid header from another file (different file key): the payload does not open.
    first = encrypt_bytes(b"A" * 100, [identity.recipient()])
    second = encrypt_bytes(b"B" * 100, [identity.recipient()])
    swapped = second[: header_length(second)] + first[header_length(first) :]
    outcome = run_decrypt(swapped, [identity])
    assert isinstance(outcome.error, AgePayloadError)
    assert outcome.released == b""


# --- header malformations ----------------------------------------------------------------------


def good_parts(identity):
    key = bytes(range(16))
    return key, x25519_stanza(identity.recipient().public_bytes, key)


def crafted(header: bytes, key=bytes(range(16))) -> bytes:
    return header + seal_chunks(key, bytes(16), [(b"x", True)])


def with_mac(stanzas: str, key=bytes(range(16))) -> bytes:
    return crafted(header_with_mac(key, stanzas), key)


IDENTITY = Identity.generate()
KEY, GOOD_STANZA = good_parts(IDENTITY)
GOOD = with_mac(GOOD_STANZA)
SHARE_LINE, BODY_LINE = GOOD_STANZA.splitlines()


def mac_line(data: bytes) -> bytes:
    head = header_length(data)
    return data[: head - 1].rsplit(b"\n", 1)[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "it is empty"),
        (b"age-encryption.org/v1", "ends inside the header"),
        (b"age-encryption.org/v1\n-> X25519 abc\n", "ends inside the header"),
        (GOOD[: header_length(GOOD) - 1], "ends inside the header"),
        (b"hello world, this is a tar file" * 10, "not an age-encrypted file"),
        (b"\x1f\x8b\x08\x00" + bytes(100), "not an age-encrypted file"),
        (b"age-encryption.org/v2\n" + GOOD[22:], "unsupported age version"),
        (GOOD.replace(b"\n", b"\r\n", 1), "unsupported age version"),
        (b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n", "ASCII-armored"),
        (with_mac(""), "no recipient stanza"),
        (with_mac(SHARE_LINE + "\r\n" + BODY_LINE + "\n"), "bad recipient stanza argument"),
        (with_mac(GOOD_STANZA.replace("-> X25519 ", "->  X25519 ")), "bad recipient stanza argument"),
        (with_mac(GOOD_STANZA.replace("-> X25519 ", "-> X25519  ")), "bad recipient stanza argument"),
        (with_mac(GOOD_STANZA.replace("-> X25519 ", "->X25519 ")), "bad recipient stanza line"),
        (with_mac("->\n\n" + GOOD_STANZA), "bad recipient stanza line"),
        (with_mac("-> a\xe9b\n\n" + GOOD_STANZA), "bad recipient stanza argument"),
        (with_mac(GOOD_STANZA + "\n"), "unexpected line"),
        (with_mac(GOOD_STANZA + "garbage\n"), "unexpected line"),
        (with_mac(SHARE_LINE + "\n" + BODY_LINE + "=\n"), "not unpadded base64"),
        (with_mac(SHARE_LINE + "\n" + BODY_LINE + " \n"), "not unpadded base64"),
        (with_mac(SHARE_LINE + "\n" + BODY_LINE + "\r\n"), "not unpadded base64"),
        (with_mac(SHARE_LINE + "\n" + BODY_LINE[:-1] + "B\n"), "non-canonical base64"),
        (with_mac("-> x\n" + "A" * 65 + "\n\n" + GOOD_STANZA), "longer than 64 columns"),
        (with_mac("-> x\n" + "A" * 64 + "\n" + GOOD_STANZA), "must end with a short line"),
        (with_mac("-> x\n" + "A" * 64 + "\n"), "must end with a short line"),
        (with_mac("-> x\n" + "A" * 64 + "\nA\n" + GOOD_STANZA), "not unpadded base64"),
        (
            with_mac(GOOD_STANZA.replace(SHARE_LINE.split()[-1], SHARE_LINE.split()[-1] + " extra")),
            "exactly one",
        ),
        (with_mac("-> X25519\n" + BODY_LINE + "\n"), "exactly one argument"),
        (with_mac(SHARE_LINE[:-1] + "B\n" + BODY_LINE + "\n"), "share is not canonical"),
        (with_mac(SHARE_LINE[:-4] + "\n" + BODY_LINE + "\n"), "share is not"),
        (with_mac(SHARE_LINE + "\n" + b64(bytes(31)) + "\n"), "wrong size"),
        (with_mac(SHARE_LINE + "\n" + b64(bytes(48)) + "\n\n"), "wrong size"),
        (with_mac("-> scrypt c2FsdHNhbHRzYWx0c2FsdA 10\n" + b64(bytes(32)) + "\n" + GOOD_STANZA), "scrypt"),
        (GOOD.replace(mac_line(GOOD), b"--- " + b64(bytes(31)).encode()), "the MAC has the wrong size"),
        (GOOD.replace(mac_line(GOOD), mac_line(GOOD)[:-1]), "malformed header: the MAC "),
        (
            GOOD.replace(mac_line(GOOD), b"--- " + b64(bytes(31)).encode()[:-1] + b"B"),
            "the MAC is non-canonical",
        ),
        (GOOD.replace(mac_line(GOOD), mac_line(GOOD) + b" "), "bad MAC line"),
        (GOOD.replace(mac_line(GOOD), mac_line(GOOD).replace(b"--- ", b"---  ")), "bad MAC line"),
        (GOOD.replace(mac_line(GOOD), mac_line(GOOD).replace(b"--- ", b"---")), "bad MAC line"),
        (GOOD.replace(mac_line(GOOD), mac_line(GOOD).replace(b"--- ", b"---- ")), "bad MAC line"),
        (GOOD.replace(mac_line(GOOD), b"---"), "bad MAC line"),
        (GOOD.replace(mac_line(GOOD), mac_line(GOOD) + b"=="), "the MAC is not unpadded base64"),
        (GOOD[: header_length(GOOD) - 1] + b"x" * 200, "bad MAC line"),
        (b"age-encryption.org/v1\n" + b"-> x\n" + b"A" * (2 << 20), "longer than 1 MiB"),
    ],
)
async def test_malformed_headers_are_rejected(data, message):
    for sizes in ([], [1], [13, 7]):
        if sizes == [1] and len(data) > 5000:
            continue
        outcome = await decrypt_outcome(data, [IDENTITY], sizes)
        assert isinstance(outcome.error, AgeHeaderError), outcome.error
        assert message in str(outcome.error)
        assert outcome.released == b""


def test_the_crafted_good_file_is_good():
    assert decrypt_bytes(GOOD, [IDENTITY]) == b"x"


def test_low_order_share_of_another_recipient_is_still_rejected():
    # Like the reference implementation, a malformed X25519 stanza is fatal even when the
    # stanza is not ours, unless a previous stanza already opened.
    low_order = bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7")
    bad = stanza_lines("X25519", [b64(low_order)], bytes(32))
    with pytest.raises(AgeHeaderError, match="low-order"):
        decrypt_bytes(with_mac(bad + GOOD_STANZA), [IDENTITY])
    assert decrypt_bytes(with_mac(GOOD_STANZA + bad), [IDENTITY]) == b"x"


def test_errors_never_include_key_material():
    identity = Identity.generate()
    secret = identity.to_string()
    data = encrypt_bytes(b"x" * 100, [identity.recipient()])
    for bad in (data[:-1], data[:50], data.replace(b"X25519", b"X25518")):
        with pytest.raises(AgeError) as info:
            decrypt_bytes(bad, [identity])
        assert secret not in str(info.value)
        assert identity.private_bytes().hex() not in str(info.value)


def test_passphrase_files_are_explained():
    data = with_mac(stanza_lines("scrypt", [b64(bytes(16)), "18"], bytes(32)))
    with pytest.raises(NoMatchingIdentity, match=r"passphrase \(age -p\)"):
        decrypt_bytes(data, [IDENTITY])


@pytest.mark.parametrize(
    "error",
    [AgePayloadError(65536, "a chunk failed authentication"), NoMatchingIdentity(), AgeHeaderMacError()],
)
def test_errors_survive_pickling(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert isinstance(again, ValueError)
