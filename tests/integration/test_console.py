"""The console chat (``python -m bot chat``, on a throwaway SQLite database) leaves no personal
data on disk."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path

from bot.console import ConsoleMessenger, chat, to_event
from flows.model import Button, Option, Text


async def test_a_citizens_own_copy_is_readable_only_by_them(tmp_path: Path) -> None:
    messenger = ConsoleMessenger(io.StringIO(), tmp_path)
    await messenger.document(1, "mine.txt", b"PHQ-9: 14", caption="Dine opplysninger")
    mode = stat.S_IMODE((tmp_path / "mine.txt").stat().st_mode)
    assert mode == 0o600


async def test_the_copy_is_gone_after_quit() -> None:
    out = io.StringIO()
    script = "1\n1\n/minedata\n/quit\n"  # consent, adult, own copy, leave
    await chat("nb", stdin=io.StringIO(script), out=out)
    saved = re.findall(r"saved to (\S+?),", out.getvalue())
    assert "DET DU SVARTE" in out.getvalue() or saved, "the copy is shown, or saved for its owner"
    for path in saved:
        assert not Path(path).exists(), "the file outlived the chat"


async def test_a_long_copy_is_saved_in_the_chats_own_folder_and_removed_on_quit(monkeypatch) -> None:
    monkeypatch.setattr("handoff.citizens.needs_document", lambda text: True)
    out = io.StringIO()
    await chat("nb", stdin=io.StringIO("1\n1\n/minedata\n/quit\n"), out=out)
    (path,) = re.findall(r"saved to (\S+?),", out.getvalue())
    assert "rph-chat-" in path and not Path(path).exists()


def test_typed_numbers_go_to_the_flow_where_it_marks_the_answers() -> None:
    marked = [Option("A. 1–2", "a:auditc_2:0"), Option("B. 3–4", "a:auditc_2:1")]
    assert to_event("2", marked) == Text("2")  # two drinks, read by the flow
    plain = [Option("Ja, jeg vil begynne", "consent:yes"), Option("Nei takk", "consent:no")]
    assert to_event("2", plain) == Button("consent:no")
