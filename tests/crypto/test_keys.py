"""age keys: parsing, encoding, the spec's example pair, and errors that never echo a secret."""

import hashlib

import pytest

from backup_addon.crypto import bech32
from backup_addon.crypto.age import Identity, Recipient, parse_identity_file

# The C2SP age spec's example X25519 pair: the identity is 32 bytes of 0x42. Its
# AGE-SECRET-KEY-1... string is checked through its SHA-256, so no secret key string is
# written into this repository.
SPEC_SCALAR = b"\x42" * 32
SPEC_IDENTITY_SHA256 = "789eb04ae4c00984483bc16c3fd1249161cc2935ef6b399b596c0defc2a08f1d"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def test_spec_example_pair():
    identity = Identity.from_private_bytes(SPEC_SCALAR)
    text = identity.to_string()
    assert hashlib.sha256(text.encode()).hexdigest() == SPEC_IDENTITY_SHA256
    assert str(identity.recipient()) == SPEC_RECIPIENT
    assert Identity.parse(text) == identity
    assert Recipient.parse(SPEC_RECIPIENT) == identity.recipient()
    assert Recipient.parse(SPEC_RECIPIENT).public_bytes.hex().startswith("132c442be010fbd5")


def test_generate_and_round_trip():
    identity = Identity.generate()
    text = identity.to_string()
    assert text.startswith("AGE-SECRET-KEY-1")
    assert text == text.upper()
    assert len(text) == 74
    again = Identity.parse(f"  {text}\n")
    assert again == identity
    assert again.private_bytes() == identity.private_bytes()
    recipient = identity.recipient()
    assert str(recipient).startswith("age1")
    assert len(str(recipient)) == 62
    assert Recipient.parse(str(recipient)) == recipient
    assert hash(Recipient.parse(str(recipient))) == hash(recipient)
    assert Identity.generate() != identity


def test_repr_never_shows_the_secret():
    identity = Identity.generate()
    secret = identity.to_string()
    for text in (repr(identity), str(identity), f"{identity!r}"):
        assert secret not in text
        assert secret[16:40] not in text
        assert identity.private_bytes().hex() not in text
    assert str(identity.recipient()) in repr(identity)


def secret_fragments(secret: str) -> list[str]:
    return [secret, secret.lower(), secret[16:], secret[16:48].lower()]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: s.lower(), "uppercase"),
        (lambda s: s[:-1] + ("Q" if s[-1] != "Q" else "P"), "checksum"),
        (lambda s: s[:40] + s[41:], "checksum"),
        (lambda s: s.replace("AGE-SECRET", "AGE-secret"), "mixed case"),
        (lambda s: s[:16] + s[16:].lower(), "mixed case"),
        (lambda s: s[:30] + "B" + s[31:], "invalid character"),
        (lambda s: s.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-PQ-1"), "AGE-SECRET-KEY-1"),
    ],
)
def test_bad_secret_keys_are_rejected_without_echoing(mangle, message):
    secret = Identity.generate().to_string()
    bad = mangle(secret)
    with pytest.raises(ValueError, match="not an age secret key") as info:
        Identity.parse(bad)
    assert message in str(info.value)
    for fragment in [*secret_fragments(secret), bad]:
        assert fragment not in str(info.value)


def test_secret_key_given_as_recipient_is_rejected_without_echoing():
    secret = Identity.generate().to_string()
    with pytest.raises(
        ValueError, match=r"not an age public key \(age1\.\.\.\): this is a secret key"
    ) as info:
        Recipient.parse(secret)
    for fragment in secret_fragments(secret):
        assert fragment not in str(info.value)


def test_identity_with_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.parse(bech32.encode("AGE-SECRET-KEY-", bytes(31)))
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.from_private_bytes(bytes(33))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"not an age public key \(age1\.\.\.\)"),
        ("hello", r"not an age public key \(age1\.\.\.\)"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", "SSH keys are not supported"),
        (SPEC_RECIPIENT.upper(), r"not an age public key \(age1\.\.\.\)"),
        (SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10].upper() + SPEC_RECIPIENT[11:], "mixed case"),
        (SPEC_RECIPIENT[:-1] + "q", "checksum"),
        (SPEC_RECIPIENT[:30] + SPEC_RECIPIENT[31:], "checksum"),
        (bech32.encode("age", bytes(range(31))), "32 bytes"),
        (bech32.encode("age1tag", bytes(range(33))), "plugin or post-quantum"),
        (bech32.encode("agex", bytes(range(32))), r"not an age public key \(age1\.\.\.\)"),
        (bech32.encode("age", bytes(32)), "not a usable X25519 point"),
    ],
)
def test_bad_public_keys(text, message):
    with pytest.raises(ValueError, match=message):
        Recipient.parse(text)


def test_low_order_recipient_is_refused():
    with pytest.raises(ValueError, match="not a usable X25519 point"):
        Recipient.from_public_bytes(bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        Recipient.from_public_bytes(bytes(31))


def test_identity_file_with_comments():
    first, second = Identity.generate(), Identity.generate()
    text = f"# created: now\n# public key: {first.recipient()}\n\n{first.to_string()}\n  \n{second.to_string()}\n"
    assert parse_identity_file(text) == [first, second]


def test_identity_file_errors_name_the_line_not_the_secret():
    secret = Identity.generate().to_string()
    broken = secret[:-1] + ("Q" if secret[-1] != "Q" else "P")
    text = f"# kit\n\n{broken}\n"
    with pytest.raises(ValueError, match=r"^line 3: not an age secret key") as info:
        parse_identity_file(text)
    for fragment in [*secret_fragments(secret), broken]:
        assert fragment not in str(info.value)
    with pytest.raises(ValueError, match="no age secret key"):
        parse_identity_file("# only comments\n\n")
