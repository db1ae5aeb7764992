"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) of the bot process.

    python bench/profile_report.py PROFILE.txt [--top 25]

Prints where the CPU samples go: by area (crypto, ORM, database driver, HTTP, PTB, the flow,
...), and the functions with the most inclusive and self samples. ``bench/run.py --profile``
writes such files (one per backend).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: (area, pattern on a frame "function (path:line)"): the first area found from the leaf up
AREAS: tuple[tuple[str, str], ...] = (
    ("key derivation / HMAC (cryptography)", r"hkdf|HKDF|pbkdf|Scrypt|derive"),
    ("Fernet encrypt/decrypt (cryptography)", r"fernet\.py|cryptography/"),
    ("state machine (transitions)", r"transitions/"),
    ("risk phrase detector (flows/risk_text)", r"flows/risk_text\.py"),
    ("screening flow (flows/)", r"flows/"),
    ("handoff (cards, desk, service)", r"handoff/"),
    ("SQLite driver (sqlite3)", r"sqlite3/|_sqlite3|\(sqlite3"),
    ("PostgreSQL driver (psycopg)", r"psycopg/|psycopg_binary"),
    ("SQLAlchemy ORM / core", r"sqlalchemy/|sqlmodel/"),
    ("repository code (storage/)", r"storage/"),
    ("HTTP client (httpx/httpcore/h11/anyio)", r"httpx/|httpcore/|h11/|anyio/"),
    ("webhook server (tornado)", r"tornado/"),
    ("PTB (telegram/)", r"telegram/"),
    ("bot/ adapter, outbox", r"/bot/|\bbot/"),
    ("asyncio / threads", r"asyncio/|threading\.py|concurrent/"),
    ("json / stdlib", r"json/|copy\.py|enum\.py|dataclasses\.py|datetime|zoneinfo"),
)


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = [f for f in head.split(";") if f]
        stacks.append((frames, int(count)))
    return stacks


def _name(frame: str) -> str:
    """'fn (path/to/file.py:123)' -> 'fn (to/file.py)'."""
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    fn, path = match.groups()
    parts = path.replace("\\", "/").split("/")
    short = "/".join(parts[-2:])
    return f"{fn} ({short})"


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # leaf first
        for area, pattern in AREAS:
            if re.search(pattern, frame):
                return area
    return "other"


def report(path: Path, top: int = 25) -> str:
    stacks = parse(path)
    total = sum(count for _, count in stacks) or 1
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for frames, count in stacks:
        areas[area_of(frames)] += count
        for name in {_name(f) for f in frames}:
            inclusive[name] += count
        if frames:
            self_time[_name(frames[-1])] += count
    lines = [f"{path.name}: {total} samples (CPU only, idle excluded)", "", "by area (leaf frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {area}" for area, n in areas.most_common()]
    lines += ["", f"top {top} inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", f"top {top} self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(report(args.profile, args.top))


if __name__ == "__main__":
    main()
