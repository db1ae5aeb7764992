"""The conversation's state diagram, drawn by ``transitions`` from the same table the bot
runs on (so the picture in the README cannot drift from the code)."""

from __future__ import annotations

from transitions.extensions import GraphMachine

from flows.conversation import DONE, ENDED, ScreeningFlow


class _Model:
    pass


def mermaid(flow: ScreeningFlow | None = None) -> str:
    flow = flow or ScreeningFlow()
    model = _Model()
    GraphMachine(
        model=model,
        states=["new", "consent", "age", *[q.id for q in flow.questions], DONE, *ENDED],
        transitions=[row for row in flow.transition_table() if row["trigger"] != "back"],
        initial="new",
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="Introductory screening",
    )
    drawn = model.get_graph().draw(None)  # type: ignore[attr-defined]
    # Drop the colour classes: the README shows the structure, not the current state.
    lines = [line for line in drawn.splitlines() if not line.strip().startswith(("classDef", "Class "))]
    return "\n".join(line for line in lines if line.strip()) + "\n"
