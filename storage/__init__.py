"""Storage: encryption at rest and the one repository implementation.

Health answers, free text, chat ids and relayed messages are encrypted at rest; a citizen
is found by a keyed HMAC of their Telegram user id, never by the id in clear.
"""

from .crypto import (
    Cipher,
    EncryptedJSON,
    EncryptedText,
    InvalidKeys,
    InvalidToken,
    current_cipher,
    set_cipher,
)
from .repository import (
    DIRECTIONS,
    STATUSES,
    AuditRecord,
    CaseNotFound,
    CaseRecord,
    CitizenRecord,
    DutyRecord,
    RelayRecord,
    SqlRepository,
)
from .tables import AuditEvent, Case, Citizen, Duty, ProcessedUpdate, RelayMessage, UtcDateTime

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
    "ProcessedUpdate",
    "RelayMessage",
    "RelayRecord",
    "SqlRepository",
    "UtcDateTime",
    "current_cipher",
    "set_cipher",
]
