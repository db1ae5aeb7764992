"""Storage of the messages relayed between a citizen and the therapist who holds the case
(encrypted; linked to the message in the therapist's chat, so a reply finds its case)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    bindparam,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from handoff.ports import (
    DIRECTIONS,
    CaseNotFound,
    RelayRecord,
)

from .base import (
    _RELAYS,
    StoreBase,
    _rows,
    _utc,
)
from .tables import RelayMessage

log = logging.getLogger(__name__)

_UNDELIVERED_RELAYS = (
    select(_RELAYS)
    .where(_RELAYS.c.case_id == bindparam("case_id"), _RELAYS.c.delivered_at.is_(None))
    .order_by(_RELAYS.c.created_at.asc(), _RELAYS.c.id.asc())
)


class RelayStorage(StoreBase):
    """Relayed messages."""

    # --- relayed messages -------------------------------------------------------------------

    def add_relay(
        self,
        case_id: int,
        direction: str,
        body: str,
        now: datetime,
        *,
        therapist_id: int | None = None,
        therapist_message_id: int | None = None,
        delivered: bool = False,
    ) -> int:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        now = _utc(now)
        with self._tx(write=True) as db:
            row = RelayMessage(
                case_id=case_id,
                direction=direction,
                body=body,
                created_at=now,
                delivered_at=now if delivered else None,
                therapist_id=therapist_id,
                therapist_message_id=therapist_message_id,
            )
            db.add(row)
            try:
                db.flush()
            except IntegrityError:
                raise CaseNotFound(f"case {case_id} not found") from None
            assert row.id is not None
            return row.id

    def link_relays(self, ids: Iterable[int], therapist_id: int, message_id: int, now: datetime) -> int:
        """Mark relayed messages delivered in the therapist's chat as ``message_id`` (so a
        Telegram reply to that message finds its case)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._tx(write=True) as db:
            return self._conditional_update(
                db,
                update(RelayMessage)
                .where(col(RelayMessage.id).in_(ids))
                .values(
                    therapist_id=int(therapist_id),
                    therapist_message_id=int(message_id),
                    delivered_at=_utc(now),
                ),
            )

    def undelivered_relays(self, case_id: int) -> list[RelayRecord]:
        """Messages of the case not yet delivered, oldest first."""
        with self._tx(write=False) as db:
            rows = _rows(db, _UNDELIVERED_RELAYS, case_id=case_id)
        return [RelayRecord(**row) for row in rows]

    def mark_delivered(self, ids: Iterable[int], now: datetime) -> int:
        ids = list(ids)
        if not ids:
            return 0
        now = _utc(now)
        with self._tx(write=True) as db:
            return self._conditional_update(
                db,
                update(RelayMessage)
                .where(col(RelayMessage.id).in_(ids), col(RelayMessage.delivered_at).is_(None))
                .values(delivered_at=now),
            )

    def case_for_therapist_message(self, therapist_id: int, message_id: int) -> int | None:
        """The case a message in a therapist's private chat belongs to (for replies)."""
        with self._tx(write=False) as db:
            return db.scalar(
                select(col(RelayMessage.case_id))
                .where(
                    col(RelayMessage.therapist_message_id) == int(message_id),
                    col(RelayMessage.therapist_id) == int(therapist_id),
                )
                .order_by(col(RelayMessage.id).desc())
                .limit(1)
            )
