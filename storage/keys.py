"""Keys and retention: re-encrypting every stored value under the newest key, checking
that the configured keys are this database's, and purging what has been kept long enough
(counts only, never personal data)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography.fernet import InvalidToken
from sqlalchemy import (
    Table,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy import type_coerce as sa_type_coerce
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, col

from handoff.cases import (
    STATUS_CLOSED,
    STATUS_SCREENING,
)

from .base import (
    LOOKUP_SECRET,
    KeysDoNotMatch,
    StoreBase,
    _utc,
)
from .courses import keeps_case
from .crypto import EncryptedJSON, EncryptedText
from .tables import AuditEvent, Case, Citizen, ProcessedUpdate, StorageMeta

log = logging.getLogger(__name__)


class _DryRun(Exception):
    """Internal: roll back a purge that was only counting."""


@dataclass(frozen=True, slots=True)
class RotationCount:
    """Encrypted values of one table after :meth:`SqlRepository.rotate_keys`."""

    table: str
    rotated: int  # re-encrypted under the newest key now
    current: int  # already under the newest key: nothing to do
    unreadable: int = 0  # no configured key decrypts it: left alone


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What :meth:`SqlRepository.key_check` found (counts only)."""

    sampled: int
    decrypted: int
    secret_decrypts: bool | None  # None: no lookup secret stored yet

    @property
    def keys_match(self) -> bool:
        if self.secret_decrypts is False:
            return False
        return self.sampled == 0 or self.decrypted > 0

    @property
    def all_decrypt(self) -> bool:
        return self.secret_decrypts is not False and self.decrypted == self.sampled

    def describe(self) -> str:
        if self.secret_decrypts is None and self.sampled == 0:
            return "no encrypted values stored yet"
        if not self.keys_match:
            if self.sampled and not self.decrypted:
                what = f"none of {self.sampled} sampled stored values decrypts"
                if self.secret_decrypts is False:
                    what = (
                        f"neither the lookup secret nor any of {self.sampled} sampled stored values decrypts"
                    )
            else:
                what = "the stored lookup secret does not decrypt"
            return (
                f"{what} with TRIAGE_ENCRYPTION_KEYS: these are not the keys this database "
                "was written with (put a new key first and keep the old ones until "
                "`python -m bot rotate-keys` has run)"
            )
        if not self.all_decrypt:
            return (
                f"{self.sampled - self.decrypted} of {self.sampled} sampled values do not decrypt: "
                "a key they were written with is missing from TRIAGE_ENCRYPTION_KEYS "
                "(removed before `python -m bot rotate-keys` finished?)"
            )
        secret = "the lookup secret and " if self.secret_decrypts else ""
        return f"{secret}{self.decrypted} sampled values decrypt"


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What :meth:`SqlRepository.purge` deleted (or, in a dry run, would delete): counts
    and cut-off times, no personal data."""

    dry_run: bool
    cutoff: datetime
    audit_cutoff: datetime | None
    closed_cases: int = 0
    abandoned_screenings: int = 0
    finished_screenings: int = 0
    relay_messages: int = 0
    citizens: int = 0
    audit_events: int = 0
    processed_updates: int = 0

    @property
    def cases(self) -> int:
        return self.closed_cases + self.abandoned_screenings + self.finished_screenings

    @property
    def total(self) -> int:
        return self.cases + self.relay_messages + self.citizens + self.audit_events + self.processed_updates

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        audit = (
            f"audit events before {self.audit_cutoff:%Y-%m-%d %H:%M} UTC"
            if self.audit_cutoff is not None
            else "audit events (audit retention off)"
        )
        return [
            f"{verb} {self.closed_cases} closed cases (closed before {self.cutoff:%Y-%m-%d %H:%M} UTC)",
            f"{verb} {self.abandoned_screenings} abandoned screenings (no update since then)",
            f"{verb} {self.finished_screenings} finished self-help screenings (no update since then)",
            f"{verb} {self.relay_messages} relayed messages of those cases",
            f"{verb} {self.citizens} citizens left without a case",
            f"{verb} {self.processed_updates} processed update ids",
            f"{verb} {self.audit_events} {audit}",
        ]


class KeyStorage(StoreBase):
    """Key rotation, the key check, retention."""

    # --- key rotation and the key check ----------------------------------------------------

    def rotate_keys(
        self,
        *,
        batch_size: int = 500,
        on_batch: Callable[[RotationCount], None] | None = None,
    ) -> list[RotationCount]:
        """Re-encrypt every stored encrypted value under the newest key (the first of
        TRIAGE_ENCRYPTION_KEYS), table by table in batches of ``batch_size`` rows, one
        transaction per batch. Returns the counts per table.

        Resumable and idempotent: a value already under the newest key is left as it is
        (counted as ``current``), so after an interruption just run it again. Safe while the
        bot runs: each value is replaced only if it has not changed since it was read. A
        value no configured key decrypts is left alone and counted as ``unreadable``.
        ``on_batch`` is called after each committed batch with the table's counts so far.

        Lookups (``citizen.user_key``) do not depend on the Fernet keys and stay valid; the
        lookup secret itself is re-encrypted like every other value. Afterwards the old
        keys can be removed.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        report: list[RotationCount] = []
        for table, columns in _encrypted_columns():
            (pk,) = table.primary_key.columns
            rotated = current = unreadable = 0
            last: Any = None
            while True:
                with self._tx(write=True) as db:
                    stmt = select(pk, *(sa_type_coerce(table.c[name], Text) for name in columns))
                    if last is not None:
                        stmt = stmt.where(pk > last)
                    rows = db.execute(stmt.order_by(pk).limit(batch_size)).all()
                    if not rows:
                        break
                    for row in rows:
                        for name, token in zip(columns, row[1:], strict=True):
                            if token is None:
                                continue
                            if self._cipher.is_current(token):
                                current += 1
                                continue
                            try:
                                fresh = self._cipher.rotate(token)
                            except InvalidToken:
                                unreadable += 1
                                continue
                            raw = sa_type_coerce(table.c[name], Text)
                            changed = self._conditional_update(
                                db,
                                update(table)
                                .where(pk == row[0], raw == bindparam("old", token, type_=Text))
                                .values({table.c[name]: bindparam("new", fresh, type_=Text)}),
                            )
                            if changed:
                                rotated += 1
                            # else: rewritten meanwhile by the bot; a rerun checks it
                    last = rows[-1][0]
                if on_batch is not None:
                    on_batch(RotationCount(table.name, rotated, current, unreadable))
            report.append(RotationCount(table.name, rotated, current, unreadable))
        return report

    def key_check(self, sample: int = 20) -> KeyCheck:
        """Try to decrypt the lookup secret and up to ``sample`` other stored values (the
        newest of each encrypted column, spread over the columns)."""
        if sample < 1:
            raise ValueError("sample must be at least 1")
        targets = [
            (table, name)
            for table, columns in _encrypted_columns()
            if table.name != StorageMeta.__tablename__
            for name in columns
        ]
        per_column = max(1, -(-sample // len(targets)))
        tokens: list[str] = []
        with self._tx(write=False) as db:
            meta = StorageMeta.__table__  # type: ignore[attr-defined]
            secret = db.scalar(select(sa_type_coerce(meta.c.value, Text)).where(meta.c.name == LOOKUP_SECRET))
            for table, name in targets:
                (pk,) = table.primary_key.columns
                raw = sa_type_coerce(table.c[name], Text)
                tokens += db.scalars(
                    select(raw).where(raw.is_not(None)).order_by(pk.desc()).limit(per_column)
                ).all()
        tokens = tokens[:sample]
        decrypted = sum(1 for token in tokens if self._decrypts(token))
        return KeyCheck(
            sampled=len(tokens),
            decrypted=decrypted,
            secret_decrypts=None if secret is None else self._decrypts(secret),
        )

    def verify_keys(self, sample: int = 20) -> bool:
        """False if values are stored and the configured keys decrypt none of the sampled
        ones (or not the lookup secret): the keys are not this database's. An empty
        database passes."""
        return self.key_check(sample).keys_match

    def require_matching_keys(self, sample: int = 20) -> None:
        """Raise :class:`KeysDoNotMatch` (one line) unless :meth:`verify_keys`. Call at
        start-up, after :meth:`require_current_schema`."""
        check = self.key_check(sample)
        if not check.keys_match:
            raise KeysDoNotMatch(check.describe())

    def _decrypts(self, token: str) -> bool:
        try:
            self._cipher.decrypt(token)
        except (InvalidToken, ValueError, TypeError):
            return False
        return True

    # --- retention --------------------------------------------------------------------------

    def purge(
        self,
        now: datetime,
        retention_days: int,
        dry_run: bool = False,
        *,
        audit_retention_days: int | None = None,
        batch_size: int = 500,
    ) -> PurgeReport:
        """Delete what the retention rules say has been kept long enough; returns counts only.

        * a **closed** case ``retention_days`` after ``closed_at``;
        * a **screening** (status "screening", never handed to the therapists) with no update
          for ``retention_days``: abandoned halfway, or finished as self-help;
        * with those cases their relayed messages, and the citizen once they have no case
          left (also a citizen with no case at all, created ``retention_days`` ago); audit
          events of the cases stay, unlinked, until their own retention;
        * **processed update ids** older than ``retention_days`` (needed for a few days only);
        * **audit events** older than ``audit_retention_days`` (``None``: kept).

        Open and claimed cases are never purged: the therapists close them first. The lookup
        secret and the duty roster are never purged. One transaction per batch; a dry run
        does everything in one transaction and rolls it back, so its counts are exactly what
        a real run would delete at that moment.
        """
        now = _utc(now)
        retention_days = _positive_days("retention_days", retention_days)
        cutoff = now - timedelta(days=retention_days)
        audit_cutoff = None
        if audit_retention_days is not None:
            days = _positive_days("audit_retention_days", audit_retention_days)
            audit_cutoff = now - timedelta(days=days)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")

        if not dry_run:

            def run(step: Callable[[Session], int]) -> int:
                with self._tx(write=True) as db:
                    return step(db)

            counts = self._purge(run, cutoff, audit_cutoff, batch_size)
        else:
            outcome: dict[str, int] = {}
            try:
                with self._tx(write=True) as db:
                    outcome = self._purge(lambda step: step(db), cutoff, audit_cutoff, batch_size)
                    raise _DryRun
            except _DryRun:
                pass
            counts = outcome
        return PurgeReport(dry_run=dry_run, cutoff=cutoff, audit_cutoff=audit_cutoff, **counts)

    def _purge(
        self,
        run: Callable[[Callable[[Session], int]], int],
        cutoff: datetime,
        audit_cutoff: datetime | None,
        batch_size: int,
    ) -> dict[str, int]:
        counts = dict.fromkeys(
            (
                "closed_cases",
                "abandoned_screenings",
                "finished_screenings",
                "relay_messages",
                "citizens",
                "audit_events",
                "processed_updates",
            ),
            0,
        )
        screening = and_(col(Case.status) == STATUS_SCREENING, col(Case.updated_at) <= cutoff)
        conditions = {
            "closed_cases": and_(
                col(Case.status) == STATUS_CLOSED,
                or_(
                    col(Case.closed_at) <= cutoff,
                    and_(col(Case.closed_at).is_(None), col(Case.updated_at) <= cutoff),
                ),
                ~keeps_case(cutoff),  # a course's retention counts from its end (storage/courses.py)
            ),
            "abandoned_screenings": and_(screening, col(Case.finished_at).is_(None)),
            "finished_screenings": and_(screening, col(Case.finished_at).is_not(None)),
        }
        for kind, condition in conditions.items():

            def purge_cases(db: Session, condition: Any = condition, kind: str = kind) -> int:
                ids = list(
                    db.scalars(
                        select(col(Case.id))
                        .where(condition)
                        .order_by(col(Case.id))
                        .limit(batch_size)
                        .with_for_update()
                    ).all()
                )
                if not ids:
                    return 0
                citizen_ids = set(
                    db.scalars(
                        select(col(Case.citizen_id)).where(
                            col(Case.id).in_(ids), col(Case.citizen_id).is_not(None)
                        )
                    ).all()
                )
                relays, cases = self._delete_cases(db, cast(list[int], ids))
                counts[kind] += cases
                counts["relay_messages"] += relays
                counts["citizens"] += self._delete_caseless_citizens(db, cast(set[int], citizen_ids))
                return len(ids)

            while run(purge_cases):
                pass

        def purge_orphans(db: Session) -> int:
            ids = set(
                db.scalars(
                    select(col(Citizen.id))
                    .where(~_has_case(), col(Citizen.created_at) <= cutoff)
                    .order_by(col(Citizen.id))
                    .limit(batch_size)
                ).all()
            )
            deleted = self._delete_caseless_citizens(db, cast(set[int], ids))
            counts["citizens"] += deleted
            return deleted

        while run(purge_orphans):
            pass

        def purge_updates(db: Session) -> int:
            deleted = self._delete_batch(
                db,
                ProcessedUpdate,
                ProcessedUpdate.update_id,
                col(ProcessedUpdate.processed_at) <= cutoff,
                batch_size,
            )
            counts["processed_updates"] += deleted
            return deleted

        while run(purge_updates):
            pass

        if audit_cutoff is not None:

            def purge_audit(db: Session) -> int:
                deleted = self._delete_batch(
                    db, AuditEvent, AuditEvent.id, col(AuditEvent.at) <= audit_cutoff, batch_size
                )
                counts["audit_events"] += deleted
                return deleted

            while run(purge_audit):
                pass
        return counts

    def _delete_batch(self, db: Session, table: Any, key: Any, condition: Any, batch_size: int) -> int:
        """Delete up to ``batch_size`` rows of ``table`` matching ``condition`` (oldest keys
        first); returns how many went, so callers loop until nothing is left."""
        ids = list(db.scalars(select(key).where(condition).order_by(col(key)).limit(batch_size)).all())
        if not ids:
            return 0
        return self._conditional_update(db, delete(table).where(col(key).in_(ids)))

    def _delete_caseless_citizens(self, db: Session, citizen_ids: set[int]) -> int:
        """Delete those of ``citizen_ids`` that have no case (any more). The rows are locked
        first, so a case being added for one of them concurrently either commits first (and
        the citizen stays) or waits for this transaction (and fails its foreign key)."""
        if not citizen_ids:
            return 0
        locked = list(
            db.scalars(
                select(col(Citizen.id)).where(col(Citizen.id).in_(citizen_ids)).with_for_update()
            ).all()
        )
        if not locked:
            return 0
        return self._conditional_update(db, delete(Citizen).where(col(Citizen.id).in_(locked), ~_has_case()))


def _has_case() -> Any:
    return exists().where(col(Case.citizen_id) == Citizen.id)


def _positive_days(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of days, at least 1")
    return value


def _encrypted_columns() -> list[tuple[Table, list[str]]]:
    """Every table with encrypted columns, and those columns (found from the column types,
    so a new encrypted column is rotated and sampled without anyone remembering to)."""
    found = []
    for table in SQLModel.metadata.sorted_tables:
        names = [
            column.name for column in table.columns if isinstance(column.type, EncryptedText | EncryptedJSON)
        ]
        if names:
            found.append((table, names))
    return found
