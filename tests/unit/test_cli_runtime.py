"""bot.cli.settle_garbage_collector: what start-up built is exempt from collection."""

from __future__ import annotations

import gc

from bot.cli import GC_YOUNG_THRESHOLD, settle_garbage_collector


def test_start_up_objects_are_frozen_and_the_young_generation_is_larger() -> None:
    threshold = gc.get_threshold()
    built_at_start = [{"n": n} for n in range(1000)]  # tracked objects, alive across the call
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() >= len(built_at_start)
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, threshold[1], threshold[2])
        assert not any(obj is built_at_start for obj in gc.get_objects())  # no longer walked
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
