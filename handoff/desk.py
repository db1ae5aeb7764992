"""The therapist's desk: duty, the queue, claiming, holding several cases, releasing,
handing over and closing. Transport-neutral; the Telegram adapter only translates.

Every look at a case's details is written to the audit log (who, what, which case, when),
never with health data in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from flows import messages
from flows.model import Option, Priority
from handoff import texts
from handoff.cards import MARKERS, OUTCOMES
from handoff.cases import STATUS_CLAIMED, CaseRecord
from handoff.ports import (
    Exporter,
    ExportRefused,
    Messenger,
    RecipientGone,
    Store,
    StoreRunner,
    in_worker_thread,
)
from handoff.queue import queue_rows
from handoff.replies import Answer
from handoff.service import HandoffService
from handoff.summary import render_summary

log = logging.getLogger(__name__)


class TherapistDesk:
    def __init__(
        self,
        store: Store,
        messenger: Messenger,
        handoff: HandoffService,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        run_store: StoreRunner = in_worker_thread,
        export: Exporter | None = None,
    ) -> None:
        """``run_store(fn, *args)`` runs a store call off the event loop
        (:func:`handoff.ports.in_worker_thread`); ``export`` renders a case for the journal
        (``reports.journal.export_for_therapist``; without it no export is offered)."""
        self.store = store
        self.messenger = messenger
        self.handoff = handoff
        self.clock = clock
        self._db = run_store
        self._export = export

    async def _audit(self, therapist_id: int, action: str, case_id: int | None) -> None:
        await self._db(self.store.audit, str(therapist_id), action, case_id, self.clock())

    # --- duty ---

    async def duty(self, therapist_id: int, first_name: str, arg: str) -> list[Answer]:
        arg = arg.strip().lower()
        if arg in ("on", "på", "pa"):
            nobody_before = not await self.handoff.team_on_duty()
            await self.handoff.set_duty(therapist_id, True, first_name)
            answers = [Answer(texts.text("desk.duty_on"))]
            if nobody_before:
                digest = await self.queue(therapist_id, heading=texts.text("desk.digest_heading"))
                if digest.options:
                    answers.append(digest)
            return answers
        if arg in ("off", "av"):
            await self.handoff.set_duty(therapist_id, False, first_name)
            held = await self._db(self.store.claimed_cases, therapist_id)
            note = texts.text("desk.still_holding", count=len(held)) if held else ""
            return [Answer(texts.text("desk.duty_off") + note)]
        names = [record.first_name for record in await self.handoff.on_duty()]
        if not names:
            return [Answer(texts.text("desk.nobody_on_duty"))]
        return [Answer(texts.text("desk.on_duty_now", names=", ".join(names)))]

    # --- the queue ---

    async def queue(self, therapist_id: int, heading: str | None = None) -> Answer:
        cases = await self._db(self.store.open_cases)
        await self._audit(therapist_id, "view_queue", None)
        return queue_rows(cases, self.clock(), self.handoff.name_of, heading or texts.text("queue.heading"))

    # --- claiming ---

    async def claim(self, therapist_id: int, first_name: str, case_id: int) -> Answer:
        await self.handoff.remember_name(therapist_id, first_name)
        now = self.clock()
        won = await self._db(self.store.claim, case_id, therapist_id, now)
        record = await self._db(self.store.case, case_id)
        if record is None:
            return Answer(texts.text("desk.case_gone"), alert=True)
        if not won:
            await self.handoff.load_names()
            if record.claimed_by == therapist_id:
                return Answer(texts.text("desk.already_yours"), alert=True)
            holder = self.handoff.name_of(record.claimed_by) if record.claimed_by else None
            text = texts.text("desk.taken_by", name=holder) if holder else texts.text("desk.not_open")
            return Answer(text, alert=True)
        await self._audit(therapist_id, "claim", case_id)
        await self.handoff.refresh_card(record)
        await self._open_case(therapist_id, record, first_name)
        return Answer(texts.text("desk.claimed", label=record.label))

    async def _open_case(
        self, therapist_id: int, record: CaseRecord, first_name: str, *, intro: str = "claimed"
    ) -> None:
        """Give the therapist the full summary and the messages that waited, and tell the
        citizen who they are talking to."""
        view = self.handoff.view(record)
        summary = render_summary(view, view.answers, self.handoff.script)
        export = (
            (
                Option(texts.text("desk.export_text_button"), f"export:{record.id}:text"),
                Option(texts.text("desk.export_fhir_button"), f"export:{record.id}:fhir"),
            ),
        )
        await self.messenger.send(therapist_id, summary, export)
        await self._audit(therapist_id, "view_summary", record.id)
        await self._audit(therapist_id, "relay_start", record.id)
        waiting = await self._db(self.store.undelivered_relays, record.id)
        waiting = [m for m in waiting if m.direction == "citizen_to_therapist"]
        if waiting:
            lines = [texts.text("desk.waiting_messages", label=record.label)]
            lines += [
                texts.text("desk.waiting_message", time=f"{m.created_at:%H:%M}", body=m.body) for m in waiting
            ]
            message_id = await self.messenger.send(therapist_id, "\n".join(lines))
            if message_id is not None:
                await self._db(
                    self.store.link_relays, [m.id for m in waiting], therapist_id, message_id, self.clock()
                )
        await self.tell_citizen(record.id, intro, name=first_name)

    async def export(self, therapist_id: int, case_id: int, fmt: str) -> Answer:
        """The case for the patient record, as a file in the therapist's private chat only
        (audited; refused unless the therapist holds or closed the case)."""
        try:
            if self._export is None:
                raise ExportRefused("no journal export is configured")
            name, content = await self._export(
                self.store, case_id, therapist_id, fmt, self.clock, run_store=self._db
            )
        except ExportRefused:
            return Answer(texts.text("desk.export_refused"), alert=True)
        await self.messenger.document(therapist_id, name, content, caption=texts.text("desk.export_caption"))
        return Answer(texts.text("desk.export_sent"))

    # --- holding several cases ---

    async def held(self, therapist_id: int) -> list[CaseRecord]:
        return await self._db(self.store.claimed_cases, therapist_id)

    async def active_case(self, therapist_id: int) -> CaseRecord | None:
        """The case selected last (claim, /switch or handover), among those still held.
        Derived from the audit log, so it survives a restart."""
        held = {case.id: case for case in await self.held(therapist_id)}
        if not held:
            return None
        events = await self._db(self.store.audit_log, actor=str(therapist_id))
        for event in reversed(events):
            if event.action in ("claim", "select", "handover_in") and event.case_id in held:
                return held[event.case_id]
        return next(iter(held.values()))

    async def switch_menu(self, therapist_id: int) -> Answer:
        held = await self.held(therapist_id)
        if not held:
            return Answer(texts.text("desk.holding_none_queue"))
        active = await self.active_case(therapist_id)
        assert active is not None  # a case is held
        rows = tuple(
            (
                Option(
                    (texts.text("desk.switch_active") if case.id == active.id else "")
                    + texts.text(
                        "desk.switch_row", label=case.label, marker=MARKERS[Priority(case.priority)]
                    ),
                    f"switch:{case.id}",
                ),
            )
            for case in held
        )
        return Answer(texts.text("desk.switch_heading"), rows)

    async def select(self, therapist_id: int, case_id: int) -> Answer:
        held = {case.id: case for case in await self.held(therapist_id)}
        if case_id not in held:
            return Answer(texts.text("desk.not_holding_that"), alert=True)
        await self._audit(therapist_id, "select", case_id)
        return Answer(texts.text("desk.messages_go_to", label=held[case_id].label))

    # --- relay: therapist -> citizen ---

    async def therapist_wrote(
        self, therapist_id: int, first_name: str, text: str, message_id: int, reply_to: int | None
    ) -> Answer | None:
        if reply_to is not None:
            case_id = await self._db(self.store.case_for_therapist_message, therapist_id, reply_to)
            if case_id is None:
                # Never guess where a reply should go: a wrong guess sends one citizen's
                # therapist words to another.
                return Answer(texts.text("desk.reply_unplaced"))
            case = await self._db(self.store.case, case_id)
        else:
            case = await self.active_case(therapist_id)
        if case is None or case.claimed_by != therapist_id or case.status != STATUS_CLAIMED:
            return Answer(texts.text("desk.no_open_case"))
        citizen = await self._db(self.store.citizen_for_case, case.id)
        if citizen is None:
            return Answer(texts.text("desk.citizen_deleted", label=case.label))
        body = messages.text("therapist_says", citizen.lang, name=first_name, text=text)
        try:
            await self.messenger.send(citizen.chat_id, body)
        except RecipientGone:
            return Answer(texts.text("desk.citizen_blocked", label=case.label))
        await self._db(
            self.store.add_relay,
            case.id,
            "therapist_to_citizen",
            text,
            self.clock(),
            therapist_id=therapist_id,
            therapist_message_id=message_id,
            delivered=True,
        )
        return None

    # --- relay: citizen -> therapist ---

    async def citizen_wrote(
        self,
        case: CaseRecord,
        text: str,
        risk: str | None,
        from_chat: int,
        message_id: int | None,
        media: str | None = None,
    ) -> None:
        """Relay to the holder if claimed, else keep it (encrypted) for the claim."""
        now = self.clock()
        if case.status != STATUS_CLAIMED or case.claimed_by is None:
            if text:
                await self._db(self.store.add_relay, case.id, "citizen_to_therapist", text, now)
            return
        therapist_id = case.claimed_by
        if media is not None and message_id is not None:
            sent = await self.messenger.copy(therapist_id, from_chat, message_id)
            note = texts.text("desk.media_from_citizen", label=case.label, media=media)
            await self.messenger.send(therapist_id, note, reply_to=sent)
            return
        if risk:
            head = texts.text("desk.risk_message", risk=risk, label=case.label)
        else:
            head = texts.text("desk.citizen_message", label=case.label)
        sent = await self.messenger.send(therapist_id, f"{head}\n{text}", urgent=risk is not None)
        await self._db(
            self.store.add_relay,
            case.id,
            "citizen_to_therapist",
            text,
            now,
            therapist_id=therapist_id,
            therapist_message_id=sent,
            delivered=sent is not None,
        )

    # --- release, handover, close ---

    async def release(self, therapist_id: int) -> Answer:
        case = await self.active_case(therapist_id)
        if case is None:
            return Answer(texts.text("desk.holding_none"))
        if not await self._db(self.store.release, case.id, therapist_id, self.clock()):
            return Answer(texts.text("desk.release_refused"))
        await self._audit(therapist_id, "release", case.id)
        await self.handoff.refresh_card(await self._db(self.store.case, case.id))
        await self.tell_citizen(case.id, "released")
        return Answer(texts.text("desk.released", label=case.label))

    async def handover_menu(self, therapist_id: int) -> Answer:
        case = await self.active_case(therapist_id)
        if case is None:
            return Answer(texts.text("desk.holding_none"))
        colleagues = [r for r in await self.handoff.on_duty() if r.therapist_id != therapist_id]
        if not colleagues:
            return Answer(texts.text("desk.no_colleagues"))
        rows = tuple((Option(r.first_name, f"handover:{case.id}:{r.therapist_id}"),) for r in colleagues)
        return Answer(texts.text("desk.handover_to_whom", label=case.label), rows)

    async def handover(self, therapist_id: int, case_id: int, colleague_id: int) -> Answer:
        if colleague_id not in self.handoff.therapist_ids:
            return Answer(texts.text("desk.not_a_therapist"), alert=True)
        if not await self._db(self.store.transfer, case_id, therapist_id, colleague_id, self.clock()):
            return Answer(texts.text("desk.handover_refused"), alert=True)
        await self._audit(therapist_id, "handover_out", case_id)
        await self._audit(colleague_id, "handover_in", case_id)
        record = await self._db(self.store.case, case_id)
        await self.handoff.refresh_card(record)
        colleague = self.handoff.name_of(colleague_id)
        await self.messenger.send(
            colleague_id,
            texts.text("desk.handed_to_you", name=self.handoff.name_of(therapist_id), label=record.label),
        )
        await self._open_case(colleague_id, record, colleague, intro="handed_to_colleague")
        return Answer(texts.text("desk.handed_over", label=record.label, colleague=colleague))

    async def close_menu(self, therapist_id: int) -> Answer:
        case = await self.active_case(therapist_id)
        if case is None:
            return Answer(texts.text("desk.holding_none"))
        rows = tuple((Option(label, f"close:{case.id}:{code}"),) for code, label in OUTCOMES.items())
        return Answer(texts.text("desk.close_how", label=case.label), rows)

    async def close(self, therapist_id: int, case_id: int, outcome: str) -> Answer:
        if outcome not in OUTCOMES:
            return Answer(texts.text("desk.unknown_outcome"), alert=True)
        if not await self._db(self.store.close, case_id, therapist_id, outcome, self.clock()):
            return Answer(texts.text("desk.close_refused"), alert=True)
        await self._audit(therapist_id, "close", case_id)
        await self._audit(therapist_id, "relay_end", case_id)
        record = await self._db(self.store.case, case_id)
        await self.handoff.refresh_card(record)
        await self.tell_citizen(case_id, "closed", outcome=outcome)
        return Answer(texts.text("desk.closed", label=record.label, outcome=OUTCOMES[outcome]))

    # --- the citizen's side of these events ---

    async def tell_citizen(self, case_id: int, what: str, *, name: str = "", outcome: str = "") -> bool:
        citizen = await self._db(self.store.citizen_for_case, case_id)
        if citizen is None:
            return False
        lang = citizen.lang
        if what == "closed":
            next_step = messages.text(f"outcome_{outcome}", lang)
            text = f"{messages.text('closed', lang, next=next_step)}\n\n{messages.crisis(lang)}"
        elif what == "taking_longer":
            text = f"{messages.text('taking_longer', lang)}\n\n{messages.crisis(lang)}"
        else:
            text = messages.text(what, lang, name=name)
        try:
            await self.messenger.send(citizen.chat_id, text, urgent=what == "taking_longer")
        except RecipientGone:
            log.info("citizen unreachable (blocked the bot)")
            return False
        return True

    async def tell_holder_citizen_left(self, case: CaseRecord, why: str) -> None:
        if case.claimed_by is not None:
            await self.messenger.send(
                case.claimed_by, texts.text("desk.holder_told", label=case.label, why=why)
            )
