"""Storage: encryption at rest, the schema migrations and the one repository implementation
of the store ports (``handoff/ports.py``): ``SqlRepository``, composed of one module per kind
of thing stored (``citizens``, ``cases``, ``relays``, ``team``, ``keys``; see ``repository``).

Health answers, free text, chat ids and relayed messages are encrypted at rest; a citizen
is found by a keyed HMAC of their Telegram user id, never by the id in clear. The HMAC key
comes from a random lookup secret stored (encrypted) in the database, so rotating the
encryption keys never changes a lookup.

Start-up, in this order: ``repo.require_current_schema()`` (raises :class:`SchemaOutdated`)
then ``repo.require_matching_keys()`` (raises :class:`KeysDoNotMatch`).
"""

from . import course_tables  # noqa: F401 - registers the course tables on the metadata
from .crypto import (
    Cipher,
    EncryptedJSON,
    EncryptedText,
    InvalidKeys,
    InvalidToken,
    LookupKey,
    current_cipher,
    set_cipher,
)
from .migrate import SchemaError, SchemaOutdated, SchemaStatus
from .repository import (
    DIRECTIONS,
    STATUSES,
    AuditRecord,
    CaseNotFound,
    CaseRecord,
    CitizenRecord,
    DutyRecord,
    KeyCheck,
    KeysDoNotMatch,
    PurgeReport,
    RelayRecord,
    RotationCount,
    Routing,
    Snapshot,
    SqlRepository,
    StaleSession,
    WaitingCase,
)
from .tables import (
    AuditEvent,
    Case,
    Citizen,
    Duty,
    ProcessedUpdate,
    RelayMessage,
    StorageMeta,
    UtcDateTime,
)

__all__ = [
    "DIRECTIONS",
    "STATUSES",
    "AuditEvent",
    "AuditRecord",
    "Case",
    "CaseNotFound",
    "CaseRecord",
    "Cipher",
    "Citizen",
    "CitizenRecord",
    "Duty",
    "DutyRecord",
    "EncryptedJSON",
    "EncryptedText",
    "InvalidKeys",
    "InvalidToken",
    "KeyCheck",
    "KeysDoNotMatch",
    "LookupKey",
    "ProcessedUpdate",
    "PurgeReport",
    "RelayMessage",
    "RelayRecord",
    "RotationCount",
    "Routing",
    "SchemaError",
    "SchemaOutdated",
    "SchemaStatus",
    "Snapshot",
    "SqlRepository",
    "StaleSession",
    "StorageMeta",
    "UtcDateTime",
    "WaitingCase",
    "current_cipher",
    "set_cipher",
]
