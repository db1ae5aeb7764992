from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.dialects import sqlite

from storage.crypto import (
    LOOKUP_SECRET_BYTES,
    Cipher,
    EncryptedJSON,
    EncryptedText,
    InvalidKeys,
    LookupKey,
    current_cipher,
    set_cipher,
)


@pytest.fixture
def installed():
    cipher = Cipher([Cipher.generate_key()])
    set_cipher(cipher)
    yield cipher
    set_cipher(None)


def test_round_trip_str_and_bytes():
    cipher = Cipher([Cipher.generate_key()])
    text = "Jeg heter Kari Nordmann og sover dårlig"
    token = cipher.encrypt(text)
    assert isinstance(token, str)
    assert "Kari" not in token
    assert cipher.decrypt(token) == text.encode("utf-8")
    assert cipher.decrypt(cipher.encrypt(b"\x00\xffraw")) == b"\x00\xffraw"
    # randomised: the same plaintext never gives the same token
    assert cipher.encrypt(text) != cipher.encrypt(text)


def test_old_key_still_decrypts_and_new_writes_use_newest_key():
    old, new = Cipher.generate_key(), Cipher.generate_key()
    before = Cipher([old])
    old_token = before.encrypt("svar fra i fjor")

    rotated = Cipher([new, old])
    assert rotated.decrypt(old_token) == b"svar fra i fjor"

    new_token = rotated.encrypt("nytt svar")
    assert Cipher([new]).decrypt(new_token) == b"nytt svar"
    with pytest.raises(InvalidToken):
        Cipher([old]).decrypt(new_token)


def test_rotate_moves_a_token_to_the_newest_key():
    old, new = Cipher.generate_key(), Cipher.generate_key()
    token = Cipher([old]).encrypt("hemmelig")
    fresh = Cipher([new, old]).rotate(token)
    assert Cipher([new]).decrypt(fresh) == b"hemmelig"
    with pytest.raises(InvalidToken):
        Cipher([old]).decrypt(fresh)


def test_tampered_token_is_rejected():
    cipher = Cipher([Cipher.generate_key()])
    token = cipher.encrypt("x")
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(InvalidToken):
        cipher.decrypt(tampered)


def test_lookup_key_is_a_keyed_hmac_from_a_derived_key():
    secret = LookupKey.generate_secret()
    assert isinstance(secret, bytes) and len(secret) == LOOKUP_SECRET_BYTES == 32
    lookup = LookupKey(secret)
    digest = lookup.digest("123456789")
    assert digest == LookupKey(secret).digest("123456789")  # deterministic: indexable
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest != lookup.digest("123456780")
    assert "123456789" not in digest
    # not a plain hash, and not an HMAC under the raw secret (the key is derived)
    assert digest != hashlib.sha256(b"123456789").hexdigest()
    assert digest != hmac.new(secret, b"123456789", hashlib.sha256).hexdigest()
    # another secret, another digest
    assert LookupKey(LookupKey.generate_secret()).digest("123456789") != digest
    assert repr(lookup) == "<LookupKey>"


def test_a_lookup_never_changes_for_the_same_secret():
    """Every stored citizen is found by this digest: a change of how it is computed would
    lose them all. The value was computed with hmac.new(...).hexdigest() (before 2026-12-04)."""
    assert LookupKey(bytes(range(32))).digest("123456789") == (
        "805a67eb173f1fca7a2b84ad140ece2f3ab040dc109a80b0ef3d844dedde6d14"
    )


@pytest.mark.parametrize("secret", [b"", b"short", b"x" * 31, b"x" * 33, "x" * 32, None])
def test_lookup_secret_must_be_32_bytes(secret):
    with pytest.raises(ValueError):
        LookupKey(secret)


def test_is_current_tells_tokens_under_the_newest_key():
    old, new = Cipher.generate_key(), Cipher.generate_key()
    rotated = Cipher([new, old])
    old_token = Cipher([old]).encrypt("x")
    assert not rotated.is_current(old_token)
    assert rotated.is_current(rotated.rotate(old_token))
    assert rotated.is_current(rotated.encrypt("y"))
    assert not rotated.is_current("not a token")
    assert not rotated.is_current("blåbær")


def test_same_keys_compares_lists_in_order():
    a, b = Cipher.generate_key(), Cipher.generate_key()
    assert Cipher([a, b]).same_keys(Cipher([a, b]))
    assert not Cipher([a, b]).same_keys(Cipher([b, a]))
    assert not Cipher([a]).same_keys(Cipher([a, b]))


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [""],
        ["   "],
        ["not-a-fernet-key"],
        ["c2hvcnQ="],  # valid base64, wrong length
        [Fernet.generate_key().decode() + "x"],
        [Cipher.generate_key(), "broken"],
        [None],
        [42],
    ],
)
def test_invalid_keys(keys):
    with pytest.raises(InvalidKeys):
        Cipher(keys)


def test_invalid_keys_message_does_not_echo_the_key():
    secret = "A" * 43 + "!"
    with pytest.raises(InvalidKeys) as info:
        Cipher([Cipher.generate_key(), secret])
    assert secret not in str(info.value)
    assert "#2" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_single_key_string_and_bytes_are_accepted_and_repr_hides_keys():
    key = Cipher.generate_key()
    cipher = Cipher(key)
    assert cipher.key_count == 1
    assert Cipher(key.encode()).same_keys(cipher)
    assert key not in repr(cipher)
    # duplicates are collapsed
    assert Cipher([key, key]).key_count == 1


def test_generate_key_is_a_fernet_key():
    key = Cipher.generate_key()
    assert isinstance(key, str)
    Fernet(key)


def test_current_cipher_unset_raises_clearly():
    set_cipher(None)
    with pytest.raises(RuntimeError, match="no cipher configured"):
        current_cipher()


def test_column_types_encrypt_and_keep_null(installed):
    dialect = sqlite.dialect()
    text_type, json_type = EncryptedText(), EncryptedJSON()

    stored = text_type.process_bind_param("Kari Nordmann", dialect)
    assert stored is not None and "Kari" not in stored
    assert text_type.process_result_value(stored, dialect) == "Kari Nordmann"
    assert text_type.process_bind_param(None, dialect) is None
    assert text_type.process_result_value(None, dialect) is None

    value = {"important": "sover dårlig", "n": 3, "list": [1, "to"]}
    stored = json_type.process_bind_param(value, dialect)
    assert stored is not None and "dårlig" not in stored and "important" not in stored
    assert json_type.process_result_value(stored, dialect) == value
    assert json_type.process_bind_param(None, dialect) is None
    assert json_type.process_result_value(None, dialect) is None

    # values JSON does not know are stored as str()
    from datetime import UTC, datetime

    when = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    stored = json_type.process_bind_param({"at": when}, dialect)
    assert json_type.process_result_value(stored, dialect) == {"at": str(when)}


def test_column_types_without_cipher_raise():
    set_cipher(None)
    with pytest.raises(RuntimeError):
        EncryptedText().process_bind_param("x", sqlite.dialect())


def test_encrypted_text_refuses_non_str(installed):
    with pytest.raises(TypeError):
        EncryptedText().process_bind_param(12345, sqlite.dialect())


# --- tampering and foreign keys ---------------------------------------------------------------


def test_a_changed_token_is_still_checked_against_the_keys():
    cipher = Cipher([Cipher.generate_key()])
    token = cipher.encrypt("x")
    assert cipher.decrypt(token) == b"x"
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(InvalidToken):
        cipher.decrypt(tampered)


def test_a_token_made_under_other_keys_does_not_decrypt():
    first, second = Cipher([Cipher.generate_key()]), Cipher([Cipher.generate_key()])
    token = first.encrypt("hemmelig")
    assert first.decrypt(token) == b"hemmelig"
    with pytest.raises(InvalidToken):
        second.decrypt(token)
