"""Routine outcome monitoring as a use case (issue 33): the therapist's ``/course`` and
``/measure`` commands, the citizen's measurement occasions and ``/fremgang``, the alert
when a measure shows risk, and the scheduler that sends measures, one reminder and closes
what was not answered before the session.

Transport-neutral like :class:`handoff.desk.TherapistDesk`: the Telegram adapter calls
:meth:`CourseService.command` for a therapist and :meth:`CourseService.citizen_event` for
a citizen (from the citizen service, after /krise and /minedata and before the screening);
``run_forever`` is the background loop. The pure parts are ``handoff/courses.py`` (the
course and its timing), ``flows/measure.py`` (the occasion's conversation) and
``handoff/course_commands.py`` (the commands); storage is ``storage/courses.py``.

Safety: an answer is stored before anything is said about it; an ``Alert`` from a measure
(PHQ-9 item 9 of 1 or more, risk in anything typed) goes at once to the course's therapist,
and also to the team's group when the therapist is off duty or it is outside opening hours
(or the therapist cannot be reached); the citizen has the crisis numbers from the flow.
A measure goes only to the citizen of the course's case, and a button only answers its own
occasion. Every view and export of a course is written to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from flows import messages
from flows.measure import (
    CLOSED,
    DECLINED,
    INVITED,
    ITEM9,
    Completed,
    MeasureFlow,
    MeasureReply,
    Occasion,
    TellTherapist,
)
from flows.model import Alert, Button, Command, Context, Event, Note, Option, Say, Text
from handoff.course_commands import CommandError, CourseCommand, parse_command
from handoff.course_ports import AlreadyApplied, CourseStorePort, StaleOccasion
from handoff.course_texts import measures_in_copy, progress_text, pt
from handoff.courses import OSLO, Course, Measure, outcome_text, therapist_view
from handoff.ports import Messenger, RecipientGone, StoreRunner, in_worker_thread
from handoff.replies import Answer

log = logging.getLogger(__name__)

#: the citizen's commands a measurement occasion answers while it is open
MEASURE_COMMANDS = ("start", "stop", "back", "help", "repeat")
CHART_BUTTON = "progress:chart"
STALE_RETRIES = 3


@dataclass(frozen=True)
class Sent:
    """What the scheduler sent in one tick (for the logs and the tests)."""

    kind: str  # "measure" | "reminder" | "expired"
    course_id: int
    occasion_id: str


class CourseService:
    def __init__(
        self,
        store: Any,
        courses: CourseStorePort,
        messenger: Messenger,
        handoff: Any,  # handoff.service.HandoffService
        desk: Any,  # handoff.desk.TherapistDesk
        *,
        hours: Any = None,
        timezone: Any = OSLO,
        retention_days: int = 90,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        run_store: StoreRunner = in_worker_thread,
        flow: MeasureFlow | None = None,
        chart: Callable[..., bytes] | None = None,
    ) -> None:
        """``chart(course, lang=, tz=)`` draws the course as a PNG (the reports layer's
        ``course_chart``, given by the wiring); without it only the numbers are sent."""
        self.store = store
        self.courses = courses
        self.messenger = messenger
        self.handoff = handoff
        self.desk = desk
        self.hours = hours
        self.tz = timezone
        self.retention_days = retention_days
        self.clock = clock
        self._db = run_store
        self.flow = flow or MeasureFlow()
        self.chart = chart

    # --- helpers -------------------------------------------------------------------------------

    async def _audit(self, actor: int | str, action: str, case_id: int | None) -> None:
        await self._db(self.store.audit, str(actor), action, case_id, self.clock())

    async def _name(self, therapist_id: int) -> str:
        name = self.handoff.name_of(therapist_id)
        if name == self.handoff.name_of(-1):  # not known in this process yet
            await self.handoff.load_names()
            name = self.handoff.name_of(therapist_id)
        return name

    async def _with_holder(self, row: Any) -> Any:
        """The course as seen now: its therapist is whoever holds the case (after a
        handover, the colleague), else the one who started it."""
        case = await self._db(self.store.case, row.case_id)
        holder = case.claimed_by if case is not None and case.status == "claimed" else None
        return row if holder in (None, row.therapist_id) else replace(row, therapist_id=holder)

    def _open_hours(self, now: datetime) -> bool:
        return self.hours is None or self.hours.is_open(now.astimezone(self.tz))

    async def _therapist_on_duty(self, therapist_id: int, now: datetime) -> bool:
        on_duty = {record.therapist_id for record in await self.handoff.on_duty()}
        return therapist_id in on_duty and self._open_hours(now)

    async def _update(
        self,
        course_id: int,
        change: Callable[[Course], Any],
        occasion: Occasion | None = None,
        *,
        expected: dict[str, Any] | None = None,
        update_id: int | None = None,
    ) -> Any:
        """Change the stored course (row locked) with ``change(course)``, which returns what
        the caller needs; the occasion, if given, is stored in the same transaction (only if
        it is still as ``expected``), with the update id recorded as applied."""
        now = self.clock()

        def apply(data: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
            course = Course.from_dict(data)
            result = change(course)
            return course.to_dict(), result

        def run() -> Any:
            return self.courses.update_course(
                course_id,
                apply,
                now,
                occasion=None if occasion is None else _occasion_row(occasion),
                expected=expected,
                update_id=update_id,
            )

        return await self._db(run)

    async def _chart(self, course: Course, lang: str = "nb") -> bytes | None:
        if self.chart is None:
            return None
        try:
            return await asyncio.to_thread(self.chart, course, lang=lang, tz=self.tz)
        except ImportError:  # matplotlib (the ops extra) not installed: the text says it all
            return None
        except Exception as error:  # noqa: BLE001 - the numbers matter, not the picture
            log.warning("course chart failed: %s", type(error).__name__)
            return None

    # --- the therapist ---------------------------------------------------------------------------

    async def command(self, therapist_id: int, first_name: str, text: str) -> list[Answer]:
        """``/course ...`` or ``/measure`` from a configured therapist, on the case selected
        for relay (claim, /switch, handover)."""
        try:
            command = parse_command(text, self.tz)
        except CommandError as error:
            return [Answer(str(error))]
        case = await self.desk.active_case(therapist_id)
        if case is None:  # the case closed while its course goes on: the one course, if one
            mine = await self._db(self.courses.active_courses, therapist_id)
            case = await self._db(self.store.case, mine[0].case_id) if len(mine) == 1 else None
        if case is None:
            return [Answer("Du holder ingen sak. Ta en sak fra /queue eller velg med /switch først.")]
        if command.action == "start":
            return [await self._start(therapist_id, case)]
        row = await self._db(self.courses.course_for_case, case.id, active_only=command.action != "show")
        if row is None:
            return [Answer(f"{case.label} har ikke noe aktivt forløp. Start med /course start.")]
        row = await self._with_holder(row)
        if command.action == "show":
            return await self._show(therapist_id, row)
        if command.action == "measure":
            return [await self._measure_now(therapist_id, row)]
        if command.action == "end":
            await self._end(therapist_id, row, command)
            return []
        return [await self._set(row, command)]

    async def _start(self, therapist_id: int, case: Any) -> Answer:
        now = self.clock()
        intake = _intake(case)
        course = Course.start(
            case.id, case.label, therapist_id, now, intake=intake, first_contact_at=case.created_at
        )
        course_id = await self._db(self.courses.add_course, case.id, therapist_id, course.to_dict(), now)
        if course_id is None:
            return Answer(f"{case.label} har allerede et aktivt forløp. /course show viser det.")
        await self._audit(therapist_id, "course_start", case.id)
        if course.intake_is_baseline():
            assert intake is not None
            base = (
                f"Baseline: kartleggingen {intake.at.astimezone(self.tz):%d.%m.%Y} "
                f"(PHQ-9 {intake.phq9}, GAD-7 {intake.gad7})."
            )
        elif intake is not None:
            base = "Kartleggingen er eldre enn 4 uker: første måling blir baseline."
        else:
            base = "Ingen fullført kartlegging: første måling blir baseline."
        return Answer(
            f"Forløp startet for {case.label}. {base}\n"
            "Send måling nå: /measure · før hver samtale: /course session 2026-12-14 10:00 · "
            "fast intervall: /course every 7d · avslutt: /course end finished"
        )

    async def _set(self, row: Any, command: CourseCommand) -> Answer:
        def change(course: Course) -> str:
            if command.action == "every":
                course.set_every(command.every)
                if command.every is None:
                    return "Målingene går ut dagen før hver avtalte samtale (/course session …)."
                return f"Målingene går ut hver {command.every.days}. dag."
            assert command.at is not None
            course.book(command.at)
            days = ", ".join(f"{s.astimezone(self.tz):%d.%m. %H:%M}" for s in course.sessions)
            return (
                f"Samtale avtalt {command.at:%d.%m.%Y kl. %H:%M}. Målingen går ut dagen før. Avtalt: {days}"
            )

        try:
            said = await self._update(row.id, change)
        except ValueError as error:
            return Answer(f"Kunne ikke endre forløpet: {error}")
        return Answer(f"{Course.from_dict(row.data).label}: {said}")

    async def _show(self, therapist_id: int, row: Any) -> list[Answer]:
        course = Course.from_dict(row.data)
        await self._audit(therapist_id, "course_view", row.case_id)
        parts = [outcome_text(course, tz=self.tz)]
        last = course.measures[-1] if course.measures else None
        if last is not None:
            parts.insert(0, therapist_view(course, last, tz=self.tz))
        if course.sessions:
            parts.append(
                "Samtaler: " + ", ".join(f"{s.astimezone(self.tz):%d.%m. %H:%M}" for s in course.sessions)
            )
        if course.every is not None:
            parts.append(f"Måling hver {course.every.days}. dag.")
        await self.messenger.send(therapist_id, "\n\n".join(parts))
        await self._send_chart(therapist_id, course)  # after the numbers it illustrates
        return []

    async def _send_chart(self, therapist_id: int, course: Course) -> None:
        if not (course.measures or course.intake_is_baseline()):
            return
        png = await self._chart(course)
        if png is not None:
            await self.messenger.document(
                therapist_id,
                f"forlop-{course.label}.png",
                png,
                caption=f"Sak {course.label}: forløpet så langt",
            )

    async def _end(self, therapist_id: int, row: Any, command: CourseCommand) -> None:
        now = self.clock()
        reason = command.reason
        assert reason is not None
        await self._db(self.courses.close_occasions, row.id, now)
        course = await self._update(row.id, lambda c: (c.end(reason, now), c)[1])
        await self._audit(therapist_id, "course_end", row.case_id)
        await self.messenger.send(therapist_id, outcome_text(course, tz=self.tz))
        await self._send_chart(therapist_id, course)
        return None

    async def _measure_now(self, therapist_id: int, row: Any) -> Answer:
        label = Course.from_dict(row.data).label
        if await self._db(self.courses.open_occasions, row.id):
            return Answer(f"{label}: et skjema er allerede sendt og ikke besvart ennå.")
        sent = await self._invite(row, slot=None, deadline=None, manual=True)
        if sent is None:
            return Answer(f"{label}: innbyggeren kan ikke nås (har slettet sine data eller blokkert boten).")
        await self._audit(therapist_id, "measure_sent", row.case_id)
        return Answer(f"{label}: PHQ-9 og GAD-7 er sendt. Du får svarene her så snart de er inne.")

    # --- sending a measure --------------------------------------------------------------------

    async def _invite(
        self,
        row: Any,
        *,
        slot: datetime | None,
        deadline: datetime | None,
        manual: bool,
        ask_work: bool | None = None,
    ) -> str | None:
        """Open an occasion for the course's citizen and send the introduction; the
        occasion id, or None if nobody can be reached. For the scheduler the course is
        checked again under its lock, so two instances never send the same measure."""
        citizen = await self._db(self.store.citizen_for_case, row.case_id)
        if citizen is None:
            return None
        now = self.clock()
        name = await self._name(row.therapist_id)
        occasion = Occasion(id=Occasion.new_id(), therapist=name, lang=citizen.lang)

        def change(course: Course) -> Occasion | None:
            if not manual:
                due = [d for d in course.due(now, self.tz) if d.kind == "measure"]
                if not due:
                    return None
            booked = slot if slot is not None and slot in course.sessions else None
            upcoming = booked or next((s for s in course.sessions if now < s), None)
            occasion.session_at = upcoming.astimezone(self.tz) if upcoming is not None else None
            occasion.ask_work = course.wants_work(slot) if ask_work is None else ask_work
            course.invite(occasion.id, now, slot=slot, deadline=deadline)
            return occasion

        opened = await self._update(row.id, change, occasion=occasion)
        if opened is None:
            return None
        reply = self.flow.invite(opened, await self._context(row.therapist_id))
        await self._say_to(citizen.chat_id, reply)
        return opened.id

    async def _say_to(self, chat_id: int, reply: MeasureReply) -> None:
        for action in reply.actions:
            if isinstance(action, Say):
                await self.messenger.send(chat_id, action.text, action.options, urgent=action.urgent)

    async def _context(self, therapist_id: int, *, first_aid_given: bool = False) -> Context:
        now = self.clock()
        return Context(
            now=now,
            team_on_duty=await self._therapist_on_duty(therapist_id, now),
            first_aid_given=first_aid_given,
        )

    # --- the citizen ----------------------------------------------------------------------------

    async def citizen_event(
        self, who: Any, event: Event, lang: str, *, first_aid_given: bool = False
    ) -> bool:
        """Handle ``event`` if it belongs to a measure or the progress view; False to let the
        screening flow have it. ``/krise``, ``/minedata`` and ``/slett`` never come here
        (the citizen service handles them first)."""
        if event == Command("progress") or (isinstance(event, Button) and event.data == CHART_BUTTON):
            await self.progress(who, lang, chart=isinstance(event, Button))
            return True
        is_measure_button = isinstance(event, Button) and event.data.startswith("m:")
        if not (
            is_measure_button
            or isinstance(event, Text)
            or (isinstance(event, Command) and event.name in MEASURE_COMMANDS)
        ):
            return False
        for attempt in range(1, STALE_RETRIES + 1):
            found = await self._db(self.courses.open_occasion_of_citizen, who.user_id)
            if found is None:
                if is_measure_button:  # an old occasion's button: closed, never another's
                    await self.messenger.send(who.chat_id, _closed_text(lang))
                    return True
                return False
            occasion_row, row = found
            row = await self._with_holder(row)
            occasion = Occasion.from_dict(occasion_row.data)
            if not self._takes(occasion, event):
                return False
            ctx = await self._context(row.therapist_id, first_aid_given=first_aid_given)
            reply = self.flow.handle(occasion, event, ctx)
            try:
                await self._store_reply(row, reply, occasion_row.data, who.update_id)
            except AlreadyApplied:
                return True  # a redelivered update: applied and answered before
            except StaleOccasion:
                if attempt == STALE_RETRIES:
                    raise
                continue  # another instance moved the occasion: decide again
            await self._carry_out(who, row, reply, event, occasion)
            return True
        return True  # pragma: no cover - the loop returns or raises

    def _takes(self, occasion: Occasion, event: Event) -> bool:
        """Whether the open occasion answers this event: its buttons and commands always; text
        while a question is asked (an answer, or risk the flow must see) or as the yes/no to
        the invitation. Other text goes on as before (to the therapist holding the case)."""
        if not isinstance(event, Text):
            return True
        if occasion.state == INVITED:
            word = event.text.strip().casefold().rstrip(".!")
            return word in {
                "ja",
                "j",
                "yes",
                "y",
                "ok",
                "start",
                "jo",
                "nei",
                "n",
                "no",
                "nei takk",
                "no thanks",
            }
        return occasion.state not in CLOSED and not occasion.paused

    async def _store_reply(
        self, row: Any, reply: MeasureReply, expected: dict[str, Any], update_id: int | None
    ) -> None:
        occasion, done = reply.occasion, reply.completed

        def change(course: Course) -> None:
            if done is not None:
                measure = Measure(
                    at=occasion.finished_at or self.clock(), phq9=done.phq9, gad7=done.gad7, item9=done.item9,
                    work=done.work, answers=dict(done.answers), occasion_id=occasion.id,
                )  # fmt: skip
                course.record(measure)
            elif occasion.state == DECLINED:
                course.decline(occasion.id, occasion.declined_at or self.clock())

        await self._update(row.id, change, occasion=occasion, expected=expected, update_id=update_id)

    async def _carry_out(
        self, who: Any, row: Any, reply: MeasureReply, event: Event, before: Occasion
    ) -> None:
        """Alerts first (at once, beside the reply to the citizen), then the reply, then what
        the therapist should know."""
        alerts = [a for a in reply.actions if isinstance(a, Alert)]
        notes = [a for a in reply.actions if isinstance(a, Note)]
        alerting = (
            asyncio.create_task(self._alert(row, reply.occasion, alerts, notes, who)) if alerts else None
        )
        try:
            await self._say_to(who.chat_id, reply)
        finally:
            if alerting is not None:
                await alerting
        course = None
        for action in reply.actions:
            if isinstance(action, Completed):
                refreshed = await self._db(self.courses.course, row.id)
                course = Course.from_dict(refreshed.data)
                measure = next(m for m in course.measures if m.occasion_id == reply.occasion.id)
                await self.messenger.send(
                    row.therapist_id,
                    "📊 " + therapist_view(course, measure, tz=self.tz),
                    urgent=measure.item9 >= 1,
                )
                await self._audit(row.therapist_id, "course_view", row.case_id)
                await self._send_chart(row.therapist_id, course)
            elif isinstance(action, TellTherapist):
                label = Course.from_dict(row.data).label
                what = (
                    "tok en pause i skjemaet"
                    if action.what == "paused"
                    else "sa nei takk til skjemaet denne gangen"
                )
                await self.messenger.send(
                    row.therapist_id,
                    f"{label}: innbyggeren {what} ({action.answered} av {len(self.flow.items)} "
                    "spørsmål besvart). Ingen grunn til å purre; ta det gjerne opp i samtalen.",
                )
        if not alerts and not notes and isinstance(event, Text) and _unanswered(before, reply.occasion):
            await self._relay(row, event.text)

    async def _relay(self, row: Any, text: str) -> None:
        """Text typed during a measure that is not an answer is passed on, not lost."""
        label = Course.from_dict(row.data).label
        await self.messenger.send(row.therapist_id, f"💬 {label} (under måling)\n{text}")

    async def _alert(
        self, row: Any, occasion: Occasion, alerts: list[Alert], notes: list[Note], who: Any
    ) -> None:
        """Risk during a measure: the course's therapist at once; the team's group too when
        the therapist is off duty, outside opening hours, or cannot be reached."""
        now = self.clock()
        label = Course.from_dict(row.data).label
        reasons = {r for a in alerts for r in a.reasons}
        lines = [f"⚠️ VARSEL · måling mellom samtaler · Sak {label}"]
        if ITEM9 in occasion.answers and occasion.answers[ITEM9] >= 1:
            choice = self.flow.questions[ITEM9].choice_for_value(occasion.answers[ITEM9])
            lines.append(
                "PHQ-9 spørsmål 9 (tanker om død/selvskading): "
                + (choice.label("nb") if choice else str(occasion.answers[ITEM9]))
            )
        for note in notes:
            lines.append(f"Skrev ({note.risk}): {note.text}")
        if any(r.startswith("text_") for r in reasons) and not notes:
            lines.append("Risiko i noe innbyggeren skrev.")
        lines.append("Innbyggeren har fått krisenumrene. Ta kontakt så snart som mulig.")
        text = "\n".join(lines)
        reached = False
        try:
            reached = await self.messenger.send(row.therapist_id, text, urgent=True) is not None
        except Exception as error:  # noqa: BLE001 - then the group must hear it
            log.error("measure alert to the therapist failed: %s", type(error).__name__)
        await self._audit("system", "measure_alert", row.case_id)
        on_duty = await self._therapist_on_duty(row.therapist_id, now)
        if reached and on_duty:
            return
        name = await self._name(row.therapist_id)
        why = "kunne ikke nås" if not reached else "er ikke på vakt"
        group = (
            f"⚠️ VARSEL · Sak {label}: risiko i en måling mellom samtaler "
            f"({'spørsmål 9' if ITEM9 in reasons or any('item9' in r for r in reasons) else 'tekst'}). "
            f"Terapeuten ({name}) {why}. Innbyggeren har fått krisenumrene."
        )
        if self.handoff.therapist_chat_id is None:
            log.error("measure alert: no THERAPIST_CHAT_ID to tell the team")
            return
        try:
            await self.messenger.send(self.handoff.therapist_chat_id, group, urgent=True)
        except Exception as error:  # noqa: BLE001
            log.error("measure alert to the group failed: %s", type(error).__name__)
            if not reached:
                lang = occasion.lang
                failed = f"{messages.text('handoff_failed', lang)}\n\n{messages.crisis(lang)}"
                await self.messenger.send(who.chat_id, failed, urgent=True)

    async def progress(self, who: Any, lang: str, *, chart: bool = False) -> None:
        """``/fremgang``: the citizen's own progress in plain words, the chart on request."""
        rows = await self._db(self.courses.courses_of_citizen, who.user_id)
        courses = [Course.from_dict(r.data) for r in rows]
        therapist = await self._name(rows[-1].therapist_id) if rows else "terapeuten"
        if chart and courses:
            png = await self._chart(courses[-1], lang)
            if png is not None:
                name = "fremgang.png" if lang == "nb" else "progress.png"
                await self.messenger.document(who.chat_id, name, png, caption=pt("chart_caption", lang))
                return
        text = progress_text(courses, lang, therapist, tz=self.tz)
        has_points = any(c.measures or c.intake_is_baseline() for c in courses)
        options = ((Option(pt("chart_button", lang), CHART_BUTTON),),) if has_points else ()
        await self.messenger.send(who.chat_id, text, options)

    async def copy_lines(self, user_id: int, lang: str) -> list[str]:
        """The measures for the citizen's copy of their data (``/minedata``)."""
        rows = await self._db(self.courses.courses_of_citizen, user_id)
        courses = [(Course.from_dict(r.data), await self._name(r.therapist_id)) for r in rows]
        return measures_in_copy(courses, lang, tz=self.tz, retention_days=self.retention_days)

    # --- the scheduler -------------------------------------------------------------------------

    async def tick(self) -> list[Sent]:
        """Send what is due now: new measures, one reminder each, and close what the session
        has passed by. Safe on several instances (each change is made under the course's lock)."""
        sent: list[Sent] = []
        now = self.clock()
        for row in await self._db(self.courses.active_courses):
            try:
                sent += await self._tick_course(row, now)
            except Exception as error:  # noqa: BLE001 - one course must not stop the others
                log.error("measure schedule failed for a course: %s", type(error).__name__)
        return sent

    async def _tick_course(self, row: Any, now: datetime) -> list[Sent]:
        sent: list[Sent] = []
        row = await self._with_holder(row)
        course = Course.from_dict(row.data)
        for invitation in course.expired(now):
            stored = await self._db(self.courses.occasion, invitation.occasion_id)
            occasion = Occasion.from_dict(stored.data) if stored else None
            closed = self.flow.expire(occasion, Context(now=now)).occasion if occasion else None

            def expire(c: Course, oid: str = invitation.occasion_id) -> bool:
                match = next(i for i in c.invitations if i.occasion_id == oid)
                if match.answered_at or match.declined_at or match.expired_at:
                    return False
                c.expire(oid, now)
                return True

            if await self._update(row.id, expire, occasion=closed):
                sent.append(Sent("expired", row.id, invitation.occasion_id))
                answered = len(occasion.answers) if occasion else 0
                await self.messenger.send(
                    row.therapist_id,
                    f"{course.label}: skjemaet ble ikke besvart før fristen ({answered} av "
                    f"{len(self.flow.items)} spørsmål besvart).",
                )
        course = Course.from_dict((await self._db(self.courses.course, row.id)).data)
        for due in course.due(now, self.tz):
            if due.kind == "reminder" and due.occasion_id is not None:
                if await self._remind(row, due.occasion_id, now):
                    sent.append(Sent("reminder", row.id, due.occasion_id))
            elif due.kind == "measure":
                oid = await self._invite(
                    row, slot=due.slot, deadline=due.deadline, manual=False, ask_work=due.ask_work
                )
                if oid is not None:
                    sent.append(Sent("measure", row.id, oid))
        return sent

    async def _remind(self, row: Any, occasion_id: str, now: datetime) -> bool:
        def mark(course: Course) -> bool:
            invitation = course.invitation(occasion_id)
            if invitation.reminded_at is not None or not invitation.is_open(now):
                return False
            course.remind(occasion_id, now)
            return True

        if not await self._update(row.id, mark):
            return False
        stored = await self._db(self.courses.occasion, occasion_id)
        citizen = await self._db(self.store.citizen_for_case, row.case_id)
        if stored is None or citizen is None:
            return False
        reply = self.flow.remind(Occasion.from_dict(stored.data), Context(now=now))
        try:
            await self._say_to(citizen.chat_id, reply)
        except RecipientGone:
            return False
        return True

    async def run_forever(self, interval: float = 60.0) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # noqa: BLE001 - keep watching whatever happens
                log.error("measure schedule check failed: %s", type(error).__name__)
            await asyncio.sleep(interval)


# --- small pure helpers ------------------------------------------------------------------------


def _intake(case: Any) -> Measure | None:
    """The intake screening as a measure: its PHQ-9 and GAD-7, when both were completed."""
    session = case.session or {}
    answers = session.get("answers") or {}
    finished = case.finished_at
    if finished is None:
        return None
    try:
        return Measure.from_answers(finished, answers, source="intake")
    except (ValueError, KeyError):
        return None


def _occasion_row(occasion: Occasion) -> tuple[str, dict[str, Any], bool]:
    return occasion.id, occasion.to_dict(), occasion.state not in CLOSED


def _unanswered(before: Occasion, after: Occasion) -> bool:
    """A typed text that moved nothing (no answer, no yes or no): it is passed on, not lost."""
    return after.state == before.state and after.answers == before.answers and after.state not in CLOSED


def _closed_text(lang: str) -> str:
    from flows.measure import mt

    return mt("closed_expired", lang)
