"""What the handoff layer answers a therapist with, transport-neutral."""

from __future__ import annotations

from dataclasses import dataclass

from flows.model import Option


@dataclass(frozen=True)
class Answer:
    """One message to a therapist: text and optional buttons. For a button press,
    ``alert`` shows it as a pop-up instead."""

    text: str
    options: tuple[tuple[Option, ...], ...] = ()
    alert: bool = False
