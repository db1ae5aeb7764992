"""The one repository: everything the bot stores goes through :class:`SqlRepository`.

It implements the store ports of ``handoff/ports.py`` and is composed of one part per kind
of thing stored, each in its own module: citizens and their answers (``storage/citizens.py``),
cases with the therapists (``storage/cases.py``), relayed messages (``storage/relays.py``),
duty and the audit log (``storage/team.py``), keys and retention (``storage/keys.py``), on
the shared plumbing of ``storage/base.py``.
"""

from __future__ import annotations

from handoff.cases import STATUSES, CaseRecord, Routing, WaitingCase
from handoff.ports import (
    DIRECTIONS,
    AuditRecord,
    CaseNotFound,
    CitizenRecord,
    DutyRecord,
    RelayRecord,
    Snapshot,
    StaleSession,
)

from .base import LOOKUP_SECRET, KeysDoNotMatch
from .cases import CaseStorage
from .citizens import CitizenStorage
from .keys import KeyCheck, KeyStorage, PurgeReport, RotationCount
from .migrate import SchemaOutdated
from .relays import RelayStorage
from .team import MonitoringFigures, TeamStorage

__all__ = [
    "DIRECTIONS",
    "LOOKUP_SECRET",
    "STATUSES",
    "AuditRecord",
    "CaseNotFound",
    "CaseRecord",
    "CitizenRecord",
    "DutyRecord",
    "KeyCheck",
    "KeysDoNotMatch",
    "MonitoringFigures",
    "PurgeReport",
    "RelayRecord",
    "RotationCount",
    "Routing",
    "SchemaOutdated",
    "Snapshot",
    "SqlRepository",
    "StaleSession",
    "WaitingCase",
]


class SqlRepository(CitizenStorage, CaseStorage, RelayStorage, TeamStorage, KeyStorage):
    """Storage for citizens, cases, duty, audit and relayed messages (SQLite or
    PostgreSQL via psycopg 3): the store of ``handoff.ports.Store``, and the operators'
    keys and retention.

    Creating a repository installs ``cipher`` for the encrypted column types
    (:func:`storage.crypto.set_cipher`); one process uses one cipher.

    In-memory SQLite (``sqlite://``) shares one connection between threads and is meant for
    quick experiments only; use a file or PostgreSQL for anything concurrent.
    """
