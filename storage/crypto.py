"""Encryption at rest.

* :class:`Cipher` wraps :class:`cryptography.fernet.MultiFernet` (authenticated encryption,
  newest key first, so keys can be rotated without downtime).
* :class:`LookupKey` makes keyed HMAC lookups, so a citizen can be found by their Telegram
  user id without storing the id. Its key is derived from a random *lookup secret* that is
  generated once per database and stored there encrypted under the Fernet keys
  (``storage_meta``), not from a Fernet key: rotating the Fernet keys re-encrypts the secret
  like any other value, and every lookup stays the same.
* :class:`EncryptedText` and :class:`EncryptedJSON` are SQLAlchemy column types that encrypt
  on the way into the database and decrypt on the way out. They take the cipher from a
  module-level holder (:func:`set_cipher`), because a column type is created at import
  time, long before the keys are known.

Nothing in this module logs, and no exception message carries a key, a token or a
plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Cipher",
    "EncryptedJSON",
    "EncryptedText",
    "InvalidKeys",
    "InvalidToken",
    "JSONText",
    "LOOKUP_SECRET_BYTES",
    "LookupKey",
    "current_cipher",
    "set_cipher",
]

# HKDF "info" of the lookup key: a new purpose for the same secret gets a new label
_LOOKUP_INFO = b"rph-lookup-v2:user-id"
LOOKUP_SECRET_BYTES = 32


class InvalidKeys(ValueError):
    """The configured key list is empty or holds something that is not a Fernet key."""


class Cipher:
    """Fernet encryption with key rotation.

    ``keys`` are url-safe base64 Fernet keys, **newest first**: new tokens are always made
    with the first key, any of them decrypts. A single key string is accepted as a
    one-element list.
    """

    __slots__ = ("_count", "_fernet", "_fingerprint", "_newest")

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str | bytes):
            keys = [keys.decode("ascii") if isinstance(keys, bytes) else keys]
        cleaned: list[str] = []
        for position, key in enumerate(keys or ()):
            if isinstance(key, bytes):
                try:
                    key = key.decode("ascii")
                except UnicodeDecodeError:
                    raise InvalidKeys(f"encryption key #{position + 1} is malformed") from None
            if not isinstance(key, str) or not key.strip():
                raise InvalidKeys(f"encryption key #{position + 1} is empty or not a string")
            key = key.strip()
            try:
                # strict: Fernet itself silently ignores stray characters
                if len(base64.b64decode(key, altchars=b"-_", validate=True)) != 32:
                    raise ValueError
                Fernet(key)
            except (ValueError, TypeError, binascii.Error):
                # never echo the key itself
                raise InvalidKeys(
                    f"encryption key #{position + 1} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
            if key not in cleaned:
                cleaned.append(key)
        if not cleaned:
            raise InvalidKeys("at least one encryption key is required")
        self._count = len(cleaned)
        self._newest = Fernet(cleaned[0])
        self._fernet = MultiFernet([Fernet(key) for key in cleaned])
        # compares key lists without keeping a second copy of the keys around
        self._fingerprint = hashlib.sha256("\n".join(cleaned).encode("ascii")).digest()

    def __repr__(self) -> str:
        return f"<Cipher keys={self._count}>"

    @property
    def key_count(self) -> int:
        return self._count

    def same_keys(self, other: Cipher) -> bool:
        """True if ``other`` was configured with the same keys in the same order."""
        return hmac.compare_digest(self._fingerprint, other._fingerprint)

    # --- encryption -----------------------------------------------------------------------

    def encrypt(self, data: bytes | str) -> str:
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"can only encrypt bytes or str, not {type(data).__name__}")
        return self._fernet.encrypt(bytes(data)).decode("ascii")

    def decrypt(self, token: str | bytes) -> bytes:
        """Raises :class:`cryptography.fernet.InvalidToken` if no configured key fits or the
        token was tampered with."""
        if isinstance(token, str):
            token = token.encode("ascii")
        return self._fernet.decrypt(token)

    def rotate(self, token: str | bytes) -> str:
        """Re-encrypt ``token`` with the newest key (keeps the original timestamp). Raises
        :class:`~cryptography.fernet.InvalidToken` if no configured key decrypts it."""
        if isinstance(token, str):
            token = token.encode("ascii")
        return self._fernet.rotate(token).decode("ascii")

    def is_current(self, token: str | bytes) -> bool:
        """True if ``token`` is (authentically) encrypted under the newest key, i.e. a
        rotation has nothing to do for it."""
        if isinstance(token, str):
            try:
                token = token.encode("ascii")
            except UnicodeEncodeError:
                return False
        try:
            self._newest.decrypt(token)
        except InvalidToken:
            return False
        return True

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")


class LookupKey:
    """Keyed HMAC-SHA256 lookups: ``digest(value)`` is deterministic (so it can be indexed
    and searched for) and useless without the secret (so it does not reveal the value).

    The HMAC key is derived (HKDF-SHA256) from a random 32-byte *lookup secret*, which
    :class:`storage.repository.SqlRepository` generates once per database and stores
    encrypted in ``storage_meta``. It does not depend on the Fernet keys, so rotating them
    never changes a lookup.
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray) or len(secret) != LOOKUP_SECRET_BYTES:
            raise ValueError(f"the lookup secret must be {LOOKUP_SECRET_BYTES} bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LOOKUP_INFO).derive(bytes(secret))
        self._keyed = hmac.new(key, digestmod="sha256")  # keyed once; copied for every digest

    def __repr__(self) -> str:
        return "<LookupKey>"

    def digest(self, value: str) -> str:
        """Hex HMAC-SHA256 of ``value`` (64 characters)."""
        # Every update needs two. A copy of the keyed HMAC skips keying it again: 1.5 us,
        # against 3.4 us for hmac.digest(), which also lets go of the GIL on every call, so
        # the event loop can lose it to the database thread mid-update (docs/performance.md).
        keyed = self._keyed.copy()
        keyed.update(value.encode("utf-8"))
        return keyed.hexdigest()

    @staticmethod
    def generate_secret() -> bytes:
        return secrets.token_bytes(LOOKUP_SECRET_BYTES)


# --- the holder the column types read from --------------------------------------------------

_cipher: Cipher | None = None


def set_cipher(cipher: Cipher | None) -> None:
    """Install the process-wide cipher used by the encrypted column types (``None`` clears
    it). :class:`storage.repository.SqlRepository` does this in its constructor."""
    global _cipher
    if cipher is not None and not isinstance(cipher, Cipher):
        raise TypeError(f"expected a Cipher, not {type(cipher).__name__}")
    _cipher = cipher


def current_cipher() -> Cipher:
    if _cipher is None:
        raise RuntimeError(
            "no cipher configured for encrypted columns: call storage.set_cipher(Cipher(keys)) "
            "or create a SqlRepository before reading or writing encrypted data"
        )
    return _cipher


# --- column types ---------------------------------------------------------------------------


class EncryptedText(TypeDecorator[str]):
    """A ``str`` stored as a Fernet token in a TEXT column. ``None`` stays NULL.

    Tokens are randomised, so these columns cannot be compared or searched in SQL.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"EncryptedText takes str, not {type(value).__name__}")
        return current_cipher().encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return current_cipher().decrypt(value).decode("utf-8")

    def process_literal_param(self, value: Any, dialect: Dialect) -> str:
        raise NotImplementedError("encrypted values cannot be rendered as SQL literals")


#: the JSON of EncryptedJSON columns: compact, UTF-8, ``str()`` of what JSON does not know
_to_json = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode


class JSONText(str):
    """A value's JSON as an :class:`EncryptedJSON` column stores it (:meth:`EncryptedJSON.text`),
    made once: bound as it is, and read back with ``json.loads``, for a caller that needs
    the value as stored too (the per-update write: docs/performance.md)."""

    __slots__ = ()


class EncryptedJSON(TypeDecorator[Any]):
    """Any JSON-serialisable value stored as a Fernet token in a TEXT column. ``None`` stays
    NULL. Values that JSON does not know (datetimes, enums, ...) are stored as ``str()``."""

    impl = Text
    cache_ok = True

    @staticmethod
    def text(value: Any) -> JSONText:
        """``value``'s JSON as this column stores it; bound as it is."""
        return JSONText(_to_json(value))

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        document = value if isinstance(value, JSONText) else _to_json(value)
        return current_cipher().encrypt(document)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(current_cipher().decrypt(value))

    def process_literal_param(self, value: Any, dialect: Dialect) -> str:
        raise NotImplementedError("encrypted values cannot be rendered as SQL literals")
