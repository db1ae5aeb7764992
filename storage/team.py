"""Storage of the therapists' side: duty and names, the audit log, and the figures the
``/metrics`` page shows (counts only)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlmodel import col

from handoff.cases import (
    HANDOFF_PRIORITY,
    STATUS_CLAIMED,
    STATUS_OPEN,
)
from handoff.ports import (
    AuditRecord,
    DutyRecord,
)

from .base import (
    _AUDIT,
    _CASES,
    StoreBase,
    _rows,
    _utc,
)
from .tables import AuditEvent, Duty

log = logging.getLogger(__name__)

_NEW_AUDIT = (
    insert(_AUDIT)
    .values(
        at=bindparam("now", type_=_AUDIT.c.at.type),
        actor=bindparam("actor"),
        action=bindparam("action"),
        case_id=bindparam("case_id", type_=_AUDIT.c.case_id.type),
    )
    .returning(_AUDIT.c.id)
)


class TeamStorage(StoreBase):
    """Duty, names, the audit log, monitoring figures."""

    # --- duty -------------------------------------------------------------------------------

    def set_duty(self, therapist_id: int, on: bool, first_name: str, now: datetime) -> None:
        now = _utc(now)
        values = {"on_duty": bool(on), "changed_at": now, "first_name": first_name}
        with self._tx(write=True) as db:
            if not self._insert_ignore(db, Duty, {"therapist_id": int(therapist_id), **values}):
                self._conditional_update(
                    db, update(Duty).where(col(Duty.therapist_id) == int(therapist_id)).values(values)
                )

    def remember_therapist(self, therapist_id: int, first_name: str, now: datetime) -> None:
        """Record a therapist's first name (shown to citizens and colleagues) without
        changing their duty."""
        with self._tx(write=True) as db:
            values = {
                "therapist_id": int(therapist_id),
                "on_duty": False,
                "changed_at": _utc(now),
                "first_name": first_name,
            }
            if not self._insert_ignore(db, Duty, values):
                self._conditional_update(
                    db,
                    update(Duty)
                    .where(col(Duty.therapist_id) == int(therapist_id))
                    .values(first_name=first_name),
                )

    def therapist_names(self) -> dict[int, str]:
        with self._tx(write=False) as db:
            return {row.therapist_id: row.first_name for row in db.scalars(select(Duty)).all()}

    def on_duty(self) -> list[DutyRecord]:
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Duty)
                .where(col(Duty.on_duty).is_(True))
                .order_by(col(Duty.changed_at).asc(), col(Duty.therapist_id).asc())
            ).all()
            return [
                DutyRecord(
                    therapist_id=row.therapist_id,
                    on_duty=row.on_duty,
                    changed_at=row.changed_at,
                    first_name=row.first_name,
                )
                for row in rows
            ]

    # --- audit ------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, case_id: int | None, now: datetime) -> int:
        """Append an audit event (no health data, no citizen identifiers). Returns its id."""
        with self._tx(write=True) as db:
            (row,) = _rows(db, _NEW_AUDIT, now=_utc(now), actor=str(actor), action=action, case_id=case_id)
        return int(row["id"])

    def audit_log(self, *, actor: str | None = None, case_id: int | None = None) -> list[AuditRecord]:
        stmt = select(AuditEvent).order_by(col(AuditEvent.at).asc(), col(AuditEvent.id).asc())
        if actor is not None:
            stmt = stmt.where(col(AuditEvent.actor) == str(actor))
        if case_id is not None:
            stmt = stmt.where(col(AuditEvent.case_id) == case_id)
        with self._tx(write=False) as db:
            return [
                AuditRecord(
                    id=row.id or 0,
                    at=row.at,
                    actor=row.actor,
                    action=row.action,
                    case_id=row.case_id,
                )
                for row in db.scalars(stmt).all()
            ]

    def audit_events_since(self, since: datetime, actions: Iterable[str] | None = None) -> list[AuditRecord]:
        """Audit events at or after ``since`` (only ``actions`` if given), oldest first."""
        stmt = select(AuditEvent).where(col(AuditEvent.at) >= _utc(since))
        if actions is not None:
            stmt = stmt.where(col(AuditEvent.action).in_(list(actions)))
        stmt = stmt.order_by(col(AuditEvent.at).asc(), col(AuditEvent.id).asc())
        with self._tx(write=False) as db:
            return [
                AuditRecord(
                    id=row.id or 0, at=row.at, actor=row.actor, action=row.action, case_id=row.case_id
                )
                for row in db.scalars(stmt).all()
            ]

    def monitoring_figures(self) -> MonitoringFigures:
        """What ``/metrics`` shows of the store (bot/metrics.py): per priority the handed-over
        cases not closed, the earliest handover of those nobody has claimed, and how many
        therapists are on duty. Read-only; columns in clear only, grouped by the database,
        so a scrape costs one short read however many cases are open."""
        with self._tx(write=False) as db:
            rows = db.execute(
                select(
                    _CASES.c.priority,
                    _CASES.c.status,
                    func.count(),
                    func.min(_CASES.c.handed_over_at),
                )
                .where(
                    _CASES.c.status.in_((STATUS_OPEN, STATUS_CLAIMED)),
                    _CASES.c.priority >= HANDOFF_PRIORITY,
                )
                .group_by(_CASES.c.priority, _CASES.c.status)
            ).all()
            on_duty = db.scalar(select(func.count()).select_from(Duty).where(col(Duty.on_duty).is_(True)))
        figures = MonitoringFigures(on_duty=int(on_duty or 0))
        for priority, status, count, earliest in rows:
            figures.open_cases[priority] = figures.open_cases.get(priority, 0) + count
            if status == STATUS_OPEN and earliest is not None:
                figures.oldest_unclaimed[priority] = earliest
        return figures


@dataclass
class MonitoringFigures:
    """:meth:`SqlRepository.monitoring_figures`: counts and timestamps only, no case."""

    on_duty: int = 0
    open_cases: dict[int, int] = field(default_factory=dict)  # priority -> open or claimed
    oldest_unclaimed: dict[int, datetime] = field(default_factory=dict)  # priority -> handed over
