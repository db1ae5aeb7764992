"""The crisis conversation's words and buttons: what a person in crisis is told and asked.

The free-text detector (:mod:`flows.risk_text`) judges every message into acute, alert, ask,
about someone else, or none; the screening flow (:mod:`flows.conversation`) decides what to
do. This module holds what is said for each, so the texts and the steps that follow one
another (safe now? someone with you? go on when ready) can be read in one place:

* acute, about the writer: "Ring 113 nå" first (poison information for an overdose), then
  whether they are safe now and whether someone is with them; the questionnaire waits.
* acute, about someone they are with: "Ring 113 nå", stay with them; the questionnaire waits.
* a possible signal: one direct, warm question, yes / no / rather not say.
* worry about someone else: advice for the helper, never a question about the writer.

Pure: no I/O. The steps a session can wait on are stored in ``Session.holding``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows import messages
from flows.messages import text as t
from flows.model import Button, Event, Option, Text

if TYPE_CHECKING:
    from flows.risk_text import RiskJudgement

# What a session can be holding for (Session.holding)
SAFE_NOW = "safe_now"
SOMEONE_WITH = "someone_with"
RESUME = "resume"
ASK = "ask"
HOLDING = (SAFE_NOW, SOMEONE_WITH, RESUME, ASK)

TALK = "crisis:talk"  # the /krise button: talk to a therapist
_YES_WORDS = {"ja", "j", "yes", "y", "jo", "ja.", "yes."}
_NO_WORDS = {"nei", "n", "no", "nope", "nei.", "no."}
_SKIP_WORDS = {"vil ikke svare", "vil ikke si", "rather not say", "i'd rather not say", "skip", "pass"}

Keyboard = tuple[tuple[Option, ...], ...]


def first_aid(judgement: RiskJudgement, lang: str) -> str | None:
    """What must reach the person at once, before anything is stored, for a message that
    alerts; None for a message that only asks (or has no risk)."""
    if judgement.action != "alert":
        return None
    if judgement.acute:
        key = "acute_first_aid_other" if judgement.about == "other" else "acute_first_aid"
        lines = [t(key, lang)]
        if judgement.poisoning:
            lines.append(t("poison_line", lang))
        return "\n\n".join(lines)
    if judgement.about == "other":
        return t("other_advice", lang)
    return f"{t('risk_text', lang)}\n\n{messages.crisis(lang)}"


def crisis_options(lang: str) -> Keyboard:
    """The button under the crisis numbers (/krise): a way to a human."""
    return ((Option(t("talk_button", lang), TALK),),)


def prompt(holding: str, lang: str) -> tuple[str, Keyboard]:
    """The question a holding session is waiting on, with its buttons."""
    if holding == SAFE_NOW:
        return t("ask_safe_now", lang), (
            (Option(t("safe_yes", lang), "crisis:safe:yes"), Option(t("safe_no", lang), "crisis:safe:no")),
        )
    if holding == SOMEONE_WITH:
        return t("ask_someone_with", lang), (
            (Option(t("with_yes", lang), "crisis:with:yes"), Option(t("with_no", lang), "crisis:with:no")),
        )
    if holding == ASK:
        return t("ask_direct", lang), (
            (Option(t("ask_yes", lang), "crisis:ask:yes"), Option(t("ask_no", lang), "crisis:ask:no")),
            (Option(t("ask_skip", lang), "crisis:ask:skip"),),
        )
    return t("questions_wait", lang), ((Option(t("resume_button", lang), "crisis:resume"),),)


def answer(holding: str, event: Event) -> str | None:
    """The answer an event gives to what the session is holding for: "yes", "no", "skip"
    (rather not say) or "resume"; None if it answers nothing."""
    if isinstance(event, Button):
        if event.data == "crisis:resume":
            return "resume"
        step = {SAFE_NOW: "crisis:safe:", SOMEONE_WITH: "crisis:with:", ASK: "crisis:ask:"}.get(holding)
        if step and event.data.startswith(step):
            value = event.data[len(step) :]
            return value if value in ("yes", "no", "skip") else None
        return None
    if isinstance(event, Text):
        words = " ".join(event.text.lower().split()).rstrip("!.")
        if words in _YES_WORDS:
            return "yes"
        if words in _NO_WORDS:
            return "no"
        if holding == ASK and words in _SKIP_WORDS:
            return "skip"
    return None
