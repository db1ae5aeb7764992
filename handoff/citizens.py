"""The citizen's side of the bot, independent of transport: one event in, replies out.

For every update: load the session, let the pure flow decide, commit the new session with
the routing its alerts raise (and the update id, so a redelivered update is applied once),
and only then speak and hand over. Whatever fails, the citizen gets the crisis numbers.

The write refuses a decision from a case that has changed since it was read (another
instance, a therapist): the update is then decided again from a fresh read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flows import crisis, messages
from flows.conversation import ScreeningFlow
from flows.model import Alert, Command, Context, Event, Forget, Note, Priority, Reply, Say, Session
from flows.mydata import as_document, needs_document, render_copy
from handoff.cases import STATUS_CLAIMED, CaseRecord, Routing
from handoff.desk import TherapistDesk
from handoff.hours import OpeningHours
from handoff.ports import (
    CitizenStore,
    Messenger,
    MessengerClosed,
    RecipientGone,
    StaleSession,
    StoreRunner,
    in_worker_thread,
)
from handoff.service import HandoffFailed, HandoffService

log = logging.getLogger(__name__)

STALE_RETRIES = 5


@dataclass(frozen=True)
class Incoming:
    """Who sent an event, in transport-neutral terms."""

    user_id: int
    chat_id: int
    language_code: str | None = None
    update_id: int | None = None
    message_id: int | None = None  # the citizen's own message, to copy media to a therapist


class CitizenService:
    measures: Any = None  # handoff.course_service.CourseService: measures between sessions

    def __init__(
        self,
        store: CitizenStore,
        messenger: Messenger,
        handoff: HandoffService,
        desk: TherapistDesk,
        *,
        flow: ScreeningFlow | None = None,
        hours: OpeningHours | None = None,
        timezone: Any = UTC,
        min_age: int = 18,
        retention_days: int = 90,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        run_store: StoreRunner = in_worker_thread,
        count_error: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        """``run_store(fn, *args)`` runs a store call off the event loop
        (:func:`handoff.ports.in_worker_thread`); ``count_error`` counts an update that failed
        (the bot's metrics: ``bot.metrics.count_error``)."""
        self.store = store
        self.count_error = count_error
        self.messenger = messenger
        self.handoff = handoff
        self.desk = desk
        self.flow = flow or ScreeningFlow()
        self.hours = hours
        self.timezone = timezone
        self.min_age = min_age
        self.retention_days = retention_days
        self.clock = clock
        self._db = run_store
        self._handovers: dict[int, tuple[asyncio.Lock, int]] = {}  # chat -> (turn, waiting)

    async def handle(self, who: Incoming, event: Event, *, queued: Callable[[], None] | None = None) -> None:
        """Apply one event. Never raises: on any fault the citizen gets the crisis numbers,
        and a risk signal in what they wrote still reaches a human.
        ``queued`` is called once the answer is stored and the replies are queued (in order,
        in the messenger): the chat's next event may be handled from then on, while this one
        still waits for its replies' delivery and its card."""
        lang = messages.language_for(who.language_code)
        if event == Command("crisis"):
            # needs nothing but the messenger: no database; the button opens an urgent case
            await self._send_safely(who.chat_id, messages.crisis(lang), crisis.crisis_options(lang))
            return
        if event == Command("mydata"):
            try:
                await self.send_copy(who, lang)
            except Exception as error:  # noqa: BLE001 - fail safe
                log.error("own copy failed: %s", type(error).__name__)
                await self.apologise(who.chat_id, lang)
            return
        first_aid = self.flow.first_aid(event, lang)
        if first_aid is not None:
            # the numbers before any database work: they must not wait on a slow or lost store
            await self._send_safely(who.chat_id, first_aid.text)
        if self.measures is not None:  # an open measure between sessions, /fremgang
            try:
                if await self.measures.citizen_event(who, event, lang, first_aid_given=first_aid is not None):
                    return
            except Exception as error:  # noqa: BLE001 - fail safe, as below
                log.error("measure update failed: %s", type(error).__name__, exc_info=_trace(error))
                await self.apologise(who.chat_id, lang)
                if first_aid is not None or self.flow.risk_in(event):
                    await self.handoff.alert_unrecorded_risk()
                return
        try:
            for attempt in range(1, STALE_RETRIES + 1):
                try:
                    await self._handle(who, event, lang, first_aid_given=first_aid is not None, queued=queued)
                    break
                except StaleSession:
                    # the case changed since it was read (another instance, a therapist):
                    # decide again from what is stored now
                    if attempt == STALE_RETRIES:
                        raise
        except RecipientGone:
            log.info("citizen unreachable (blocked the bot)")
        except MessengerClosed:
            log.info("shutting down: the reply to an update was not sent")
        except Exception as error:  # noqa: BLE001 - fail safe, whatever went wrong
            log.error("citizen update failed: %s", type(error).__name__, exc_info=_trace(error))
            self.count_error(error)  # Telegram's are counted in the outbox
            await self.apologise(who.chat_id, lang)
            if first_aid is not None or self.flow.risk_in(event):
                await self.handoff.alert_unrecorded_risk()

    async def send_copy(self, who: Incoming, lang: str) -> None:
        """The citizen's own copy of everything stored about them (GDPR art. 15). It only
        reads, so a redelivered update just sends it again."""
        cases, relays = await self._db(self.store.citizen_copy, who.user_id)
        measures = await self.measures.copy_lines(who.user_id, lang) if self.measures is not None else []
        text = render_copy(
            cases,
            relays,
            lang,
            tz=self.timezone,
            retention_days=self.retention_days,
            now=self.clock(),
            extra=measures,
        )
        if needs_document(text):
            name, content = as_document(text, lang)
            caption = "Dine opplysninger" if lang == "nb" else "Your data"
            await self.messenger.document(who.chat_id, name, content, caption=caption)
        else:
            await self.messenger.send(who.chat_id, text)

    async def apologise(self, chat_id: int, lang: str) -> None:
        await self._send_safely(chat_id, f"{messages.text('error', lang)}\n\n{messages.crisis(lang)}")

    async def _send_safely(self, chat_id: int, text: str, options: Any = ()) -> None:
        try:
            await self.messenger.send(chat_id, text, options, urgent=True)
        except MessengerClosed:
            log.info("shutting down: a fail-safe reply was not sent")
        except Exception as error:  # noqa: BLE001
            log.error("could not send the fail-safe reply: %s", type(error).__name__)

    async def _handle(
        self,
        who: Incoming,
        event: Event,
        lang: str,
        *,
        first_aid_given: bool,
        queued: Callable[[], None] | None,
    ) -> None:
        """One attempt at an update: read, decide, store (version-checked), then speak.
        Raises StaleSession if the case changed between the read and the write."""
        seen = await self._db(self.store.snapshot, who.user_id, who.update_id)
        redelivered, case = seen.processed, seen.case
        session = Session.from_dict(case.session) if case else Session(lang=lang)
        session.lang = lang
        if redelivered:
            # Applied before (a restart between commit and reply?): apply nothing again, but
            # ask the current question once more so the citizen is never left hanging.
            if case is not None and not case.claimed_by:
                repeat = self.flow.handle(session, Command("repeat"), await self.context(case))
                for action in repeat.actions:
                    if isinstance(action, Say):
                        await self.messenger.send(who.chat_id, action.text, action.options)
            return
        reply = self.flow.handle(session, event, await self.context(case, first_aid_given=first_aid_given))
        if case is None and not _worth_storing(reply.session):
            # Nothing begun and nothing to keep (/slett, /hjelp, a decline): store nothing,
            # but remember the update so a redelivery is not applied again.
            await self._record_update(who.update_id)
            reply = Reply(reply.session, tuple(a for a in reply.actions if not isinstance(a, Forget)))
        elif reply.forget:
            if case is not None and case.claimed_by is not None:
                await self.desk.tell_holder_citizen_left(
                    case, "innbyggeren har slettet sine data; saken er borte."
                )
            elif case is not None:
                await self.handoff.citizen_deleted(case)
            await self._db(self.store.delete_citizen, who.user_id)
            await self._record_update(who.update_id)
            case = None
        else:
            routing = _routing(reply.actions)
            try:
                case = await self._db(
                    self.store.apply_update,
                    who.update_id,
                    user_id=who.user_id,
                    chat_id=who.chat_id,
                    lang=lang,
                    session=reply.session.to_dict(),
                    state=_phase(reply.session.state),
                    now=self.clock(),
                    case_id=case.id if case else None,
                    finished=reply.session.finished_at is not None,
                    expected_version=case.version if case else None,
                    stored_citizen=seen.citizen,
                    routing=routing,
                    stored_routing=Routing(case.priority, tuple(case.reasons)) if case else None,
                )
            except StaleSession:
                raise  # decided again from what is stored now
            except Exception:
                if _urgent(routing) and not first_aid_given:  # (handle tells the team otherwise)
                    # the risk answer and its routing could not be stored: a human must hear
                    await self.handoff.alert_unrecorded_risk()
                raise  # the citizen gets the apology with the numbers
            if case is None:
                return  # the same update was applied concurrently
        await self._carry_out(
            who, lang, case, reply.actions, team_told_on_failure=first_aid_given, queued=queued
        )

    async def _carry_out(
        self,
        who: Incoming,
        lang: str,
        case: CaseRecord | None,
        actions: Sequence[Any],
        *,
        team_told_on_failure: bool,
        queued: Callable[[], None] | None = None,
    ) -> None:
        """Say what the flow says, and pass on what it hands over, side by side: the card
        for a risk answer neither waits for the citizen's reply to be delivered nor is lost
        if that delivery fails (the citizen then gets the apology with the numbers).
        The routing of the alerts is stored already (with the answer): their card is posted
        or brought up to date once, however many alerts the reply holds.
        ``team_told_on_failure``: :meth:`handle` alerts the team itself if this fails."""
        says = [a for a in actions if isinstance(a, Say)]
        if len(says) == len(actions):  # nothing to hand over (most answers): no task needed
            await self._say(who.chat_id, says, queued)
            return
        replying = asyncio.create_task(self._say(who.chat_id, says, queued))
        fail_safe = None
        handed_over = False
        try:
            async with self._handover_turn(who.chat_id) as waited:
                if waited and case is not None:
                    # an earlier update's handover (its card) ran meanwhile: start from what
                    # it stored, so the card is edited, not posted twice
                    case = await self._db(self.store.case, case.id) or case
                for action in actions:
                    if isinstance(action, Alert) and case is not None and not handed_over:
                        handed_over = True
                        urgent = _urgent(_routing(actions))
                        fail_safe = await self._hand_over(lang, case, urgent, team_told_on_failure)
                    elif isinstance(action, Note) and case is not None:
                        await self.desk.citizen_wrote(
                            case, action.text, action.risk, who.chat_id, who.message_id, media=action.media
                        )
        finally:
            await replying  # its error, if any, after the handover has been tried
        if fail_safe is not None:  # after the reply, so the citizen reads them in order
            await self.messenger.send(who.chat_id, fail_safe, urgent=True)

    async def _say(self, chat_id: int, says: Sequence[Say], queued: Callable[[], None] | None = None) -> None:
        """Queue the turn's messages together, in order (an urgent one lends its priority to
        those before it, so none overtakes another), then wait for their delivery."""
        last_urgent = max((n for n, say in enumerate(says) if say.urgent), default=-1)
        sending = [
            asyncio.ensure_future(
                self.messenger.send(
                    chat_id, say.text, say.options, urgent=n <= last_urgent, replaceable=say.replaceable
                )
            )
            for n, say in enumerate(says)
        ]
        if queued is not None:
            await asyncio.sleep(0)  # each send has queued its message (the outbox does at once)
            queued()
        if sending:
            await asyncio.gather(*sending)

    @contextlib.asynccontextmanager
    async def _handover_turn(self, chat_id: int) -> AsyncIterator[bool]:
        """One handover (card, notes) at a time per chat, in the order of the updates; yields
        whether it had to wait for an earlier one."""
        lock, waiting = self._handovers.get(chat_id, (asyncio.Lock(), 0))
        self._handovers[chat_id] = (lock, waiting + 1)
        waited = lock.locked()
        try:
            async with lock:
                yield waited
        finally:
            lock, waiting = self._handovers[chat_id]
            if waiting == 1:
                del self._handovers[chat_id]
            else:
                self._handovers[chat_id] = (lock, waiting - 1)

    async def _record_update(self, update_id: int | None) -> None:
        if update_id is not None:
            await self._db(self.store.mark_processed, update_id, self.clock())

    async def _hand_over(self, lang: str, case: Any, urgent: bool, team_told_on_failure: bool) -> str | None:
        """Post the routed case's card (or bring it up to date); the message for the citizen
        if an urgent handover failed."""
        try:
            await self.handoff.routed(case)
        except HandoffFailed:
            if urgent:
                return f"{messages.text('handoff_failed', lang)}\n\n{messages.crisis(lang)}"
            log.error("routine intake card could not be posted; the case stays in the queue")
        except Exception:
            if urgent and not team_told_on_failure:
                # the card may not be posted: a human must still hear of the risk
                await self.handoff.alert_unrecorded_risk()
            raise  # the citizen gets the apology with the numbers
        return None

    async def context(self, case: CaseRecord | None = None, *, first_aid_given: bool = False) -> Context:
        now = self.clock()
        on_duty = await self.handoff.team_on_duty()
        next_staffed = None
        if not on_duty and self.hours is not None:
            next_staffed = self.hours.next_opening(now.astimezone(self.timezone))
        return Context(
            now=now,
            team_on_duty=on_duty,
            next_staffed=next_staffed,
            min_age=self.min_age,
            retention_days=self.retention_days,
            with_therapist=case is not None and case.status == STATUS_CLAIMED,
            handed_over=case is not None and case.handed_over_at is not None,
            first_aid_given=first_aid_given,
            opening=self.hours.span() if self.hours is not None else ("08:00", "15:30"),
        )


def _routing(actions: Sequence[Any]) -> Routing | None:
    """What the reply's alerts ask of the case, together: the highest priority, every reason
    in order (as if applied one after the other); None without an alert."""
    alerts = [a for a in actions if isinstance(a, Alert)]
    if not alerts:
        return None
    reasons = dict.fromkeys(reason for alert in alerts for reason in alert.reasons)
    return Routing(int(max(alert.priority for alert in alerts)), tuple(reasons))


def _urgent(routing: Routing | None) -> bool:
    return routing is not None and Priority(routing.priority).hands_over_at_once


def _worth_storing(session: Session) -> bool:
    """A first session is stored once the citizen has begun (consent asked), a risk alert
    was raised or a crisis question waits; a session still at "new" or ended holds nothing
    worth keeping."""
    return (
        session.state not in ("new", "declined", "too_young")
        or session.alerted.hands_over_at_once
        or session.holding is not None  # a direct question about risk waits for its answer
    )


def _phase(state: str) -> str:
    """The coarse phase kept in clear (for queues and statistics); the exact question is
    only inside the encrypted session, since it would tell which health topic is open."""
    if state in ("new", "consent", "age"):
        return "intro"
    return state if state in ("done", "declined", "too_young") else "screening"


def _trace(error: BaseException) -> bool:
    """Tracebacks only at DEBUG level: exception messages may quote personal data."""
    return log.isEnabledFor(logging.DEBUG)
