"""Keys: the lookup secret (stable lookups across rotation), rotate-keys (batched,
resumable, old key removable afterwards) and the key check at start-up."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from storage import Cipher, InvalidToken, KeysDoNotMatch, SqlRepository, set_cipher
from tests.ops_support import bot_env, count, raw_values, run_bot

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
SECRET_TEXT = "Jeg heter Kari Nordmann og sover dårlig"
ENCRYPTED = [
    ("citizen", "chat_id"),
    ("triage_case", "session"),
    ("triage_case", "reasons"),
    ("relay_message", "body"),
    ("storage_meta", "value"),
]


@pytest.fixture(autouse=True)
def _clear_cipher():
    yield
    set_cipher(None)


def open_repo(database_url: str, *keys: str, migrate: bool = False) -> SqlRepository:
    repo = SqlRepository(database_url, Cipher(list(keys)))
    if migrate:
        repo.migrate()
    return repo


def fill(repo: SqlRepository, citizens: int = 3, start: int = 0) -> list[int]:
    """Citizens with a case each (session, reasons, two relayed messages); returns case ids."""
    cases = []
    for n in range(start, start + citizens):
        user = 700_000_000 + n
        case = repo.apply_update(
            10_000 + n,
            user_id=user,
            chat_id=user,
            lang="nb",
            session={"important": f"{SECRET_TEXT} {n}"},
            state="q1",
            now=NOW + timedelta(minutes=n),
        )
        assert case is not None
        repo.set_routing(case.id, 3, ["suicidal_ideation"], NOW)
        repo.add_relay(case.id, "citizen_to_therapist", f"melding {n}", NOW)
        repo.add_relay(case.id, "therapist_to_citizen", f"svar {n}", NOW)
        cases.append(case.id)
    return cases


def every_token(database_url: str) -> list[str]:
    return [token for table, column in ENCRYPTED for token in raw_values(database_url, table, column)]


# --- the lookup secret ---------------------------------------------------------------------


def test_lookup_secret_is_generated_once_and_stored_encrypted(database_url):
    key = Cipher.generate_key()
    repo = open_repo(database_url, key, migrate=True)
    assert count(database_url, "storage_meta") == 0  # not before it is needed
    user_key = repo.user_key(42)
    assert user_key == repo.user_key(42) and len(user_key) == 64
    (token,) = raw_values(database_url, "storage_meta", "value")
    secret = base64.urlsafe_b64decode(Cipher([key]).decrypt(token))
    assert len(secret) == 32
    assert base64.urlsafe_b64encode(secret).decode() not in token  # stored encrypted
    repo.dispose()

    again = open_repo(database_url, key)
    assert again.user_key(42) == user_key  # read back, not generated anew
    assert count(database_url, "storage_meta") == 1
    again.dispose()


def test_two_databases_have_different_lookup_secrets(database_url, tmp_path):
    key = Cipher.generate_key()
    one = open_repo(database_url, key, migrate=True)
    other = open_repo(f"sqlite:///{tmp_path / 'other.sqlite3'}", key, migrate=True)
    try:
        assert one.user_key(42) != other.user_key(42)
    finally:
        one.dispose()
        other.dispose()


def test_concurrent_first_use_agrees_on_one_secret(database_url):
    key = Cipher.generate_key()
    open_repo(database_url, key, migrate=True).dispose()
    repos = [open_repo(database_url, key) for _ in range(4)]
    barrier = threading.Barrier(len(repos))
    results: dict[int, str] = {}

    def first_lookup(n: int) -> None:
        barrier.wait(timeout=30)
        results[n] = repos[n].user_key(42)

    threads = [threading.Thread(target=first_lookup, args=(n,)) for n in range(len(repos))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for repo in repos:
        repo.dispose()
    assert len(results) == len(repos) and len(set(results.values())) == 1
    assert count(database_url, "storage_meta") == 1


def test_wrong_keys_never_replace_the_lookup_secret(database_url):
    right = Cipher.generate_key()
    repo = open_repo(database_url, right, migrate=True)
    fill(repo, 1)
    (before,) = raw_values(database_url, "storage_meta", "value")
    repo.dispose()

    wrong = open_repo(database_url, Cipher.generate_key())
    with pytest.raises(KeysDoNotMatch) as info:
        wrong.find_citizen(700_000_000)
    assert "\n" not in str(info.value) and right not in str(info.value)
    with pytest.raises(KeysDoNotMatch):
        wrong.apply_update(None, user_id=1, chat_id=1, lang="nb", session={}, state="q1", now=NOW)
    wrong.dispose()
    assert raw_values(database_url, "storage_meta", "value") == [before]


# --- rotation ----------------------------------------------------------------------------


def test_rotate_then_remove_the_old_key(database_url):
    old, new = Cipher.generate_key(), Cipher.generate_key()
    before = open_repo(database_url, old, migrate=True)
    case_ids = fill(before, 3)
    user_keys = [before.user_key(700_000_000 + n) for n in range(3)]
    before.dispose()

    during = open_repo(database_url, new, old)
    # citizen 1 writes while both keys are configured; 0 and 2 do not write again
    during.apply_update(
        20_001, user_id=700_000_001, chat_id=700_000_001, lang="en",
        session={"important": "ny"}, state="q2", now=NOW, case_id=case_ids[1],
    )  # fmt: skip
    counts = {c.table: c for c in during.rotate_keys(batch_size=2)}
    assert sum(c.unreadable for c in counts.values()) == 0
    assert counts["relay_message"].rotated == 6
    assert counts["storage_meta"].rotated == 1
    # citizen 1's session was rewritten under the new key; the chat id did not change
    assert counts["citizen"].rotated == 3 and counts["citizen"].current == 0
    assert counts["triage_case"].rotated == 5 and counts["triage_case"].current == 1
    # idempotent: a second run finds nothing to do
    again = during.rotate_keys()
    assert sum(c.rotated for c in again) == 0 and sum(c.current for c in again) == 16
    during.dispose()

    # every stored token now decrypts with the new key alone, none with the old one
    only_new, only_old = Cipher([new]), Cipher([old])
    tokens = every_token(database_url)
    assert len(tokens) == 16
    for token in tokens:
        only_new.decrypt(token)
        with pytest.raises(InvalidToken):
            only_old.decrypt(token)

    after = open_repo(database_url, new)  # the old key is gone
    assert after.verify_keys()
    for n in range(3):
        user = 700_000_000 + n
        assert after.user_key(user) == user_keys[n]  # lookups never changed
        citizen = after.find_citizen(user)
        assert citizen is not None and citizen.chat_id == user
    assert after.case(case_ids[0]).session == {"important": f"{SECRET_TEXT} 0"}
    assert after.case(case_ids[1]).session == {"important": "ny"}
    assert after.case(case_ids[2]).reasons == ["suicidal_ideation"]
    assert sorted(r.body for r in after.undelivered_relays(case_ids[2])) == ["melding 2", "svar 2"]
    after.dispose()


def test_rotation_resumes_after_an_interruption(database_url):
    old, new = Cipher.generate_key(), Cipher.generate_key()
    before = open_repo(database_url, old, migrate=True)
    fill(before, 5)
    before.dispose()

    class Interrupted(Exception):
        pass

    seen: list[tuple[str, int]] = []

    def stop_after_two_batches(progress) -> None:
        seen.append((progress.table, progress.rotated))
        if len(seen) == 2:
            raise Interrupted

    during = open_repo(database_url, new, old)
    with pytest.raises(Interrupted):
        during.rotate_keys(batch_size=2, on_batch=stop_after_two_batches)
    # the two committed batches stay rotated
    assert seen == [("citizen", 2), ("citizen", 4)]
    current = Cipher([new])
    rotated_chat_ids = [t for t in raw_values(database_url, "citizen", "chat_id") if current.is_current(t)]
    assert len(rotated_chat_ids) == 4

    resumed = {c.table: c for c in during.rotate_keys(batch_size=2)}
    assert (resumed["citizen"].rotated, resumed["citizen"].current) == (1, 4)
    assert resumed["triage_case"].rotated == 10 and resumed["relay_message"].rotated == 10
    during.dispose()
    assert all(current.is_current(token) for token in every_token(database_url))


def test_values_no_key_decrypts_are_reported_and_left_alone(database_url):
    old, new, lost = (Cipher.generate_key() for _ in range(3))
    repo = open_repo(database_url, old, migrate=True)
    (case_id,) = fill(repo, 1)
    repo.dispose()
    foreign = Cipher([lost]).encrypt("skrevet med en tapt nøkkel")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE relay_message SET body = :t WHERE direction = 'therapist_to_citizen'"),
            {"t": foreign},
        )
    engine.dispose()

    during = open_repo(database_url, new, old)
    counts = {c.table: c for c in during.rotate_keys()}
    assert counts["relay_message"].unreadable == 1 and counts["relay_message"].rotated == 1
    assert foreign in raw_values(database_url, "relay_message", "body")
    check = during.key_check()
    assert check.keys_match and not check.all_decrypt  # some decrypt: start, but the check warns
    assert "1 of" in check.describe()
    during.dispose()


def test_rotation_does_not_overwrite_a_concurrent_write(database_url):
    """A value the bot rewrites between rotate's read and write is not clobbered."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: the race cannot happen there")
    old, new = Cipher.generate_key(), Cipher.generate_key()
    repo = open_repo(database_url, old, migrate=True)
    (case_id,) = fill(repo, 1)
    repo.dispose()

    bot = open_repo(database_url, new, old)

    class RacingCipher(Cipher):
        __slots__ = ("raced",)

        def rotate(self, token):
            if b"important" in self.decrypt(token) and not getattr(self, "raced", False):
                self.raced = True
                bot.apply_update(
                    None, user_id=700_000_000, chat_id=700_000_000, lang="nb",
                    session={"important": "skrevet under rotasjonen"}, state="q9", now=NOW, case_id=case_id,
                )  # fmt: skip
            return super().rotate(token)

    # the bot rewrites the session just after rotate_keys has read it
    racing = RacingCipher([new, old])
    rotating = SqlRepository(database_url, racing)
    counts = {c.table: c for c in rotating.rotate_keys()}
    assert racing.raced
    assert counts["triage_case"].rotated == 1  # reasons; the session was left to the bot
    assert rotating.case(case_id).session == {"important": "skrevet under rotasjonen"}
    rotating.dispose()
    bot.dispose()


def test_rotate_keys_command(database_url, tmp_path):
    old, new = Cipher.generate_key(), Cipher.generate_key()
    repo = open_repo(database_url, old, migrate=True)
    fill(repo, 3)
    repo.dispose()

    env = bot_env(DATABASE_URL=database_url, TRIAGE_ENCRYPTION_KEYS=f"{new},{old}")
    result = run_bot("rotate-keys", "--batch-size", "2", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "citizen: 3 re-encrypted, 0 already under the newest key" in lines
    assert "relay_message: 6 re-encrypted, 0 already under the newest key" in lines
    assert "triage_case: 6 re-encrypted, 0 already under the newest key" in lines
    assert "storage_meta: 1 re-encrypted, 0 already under the newest key" in lines
    assert "older keys can be removed" in result.stdout
    for key in (old, new):
        assert key not in result.stdout + result.stderr

    again = run_bot("rotate-keys", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "citizen: 0 re-encrypted, 3 already under the newest key" in again.stdout

    wrong_env = bot_env(DATABASE_URL=database_url, TRIAGE_ENCRYPTION_KEYS=Cipher.generate_key())
    wrong = run_bot("rotate-keys", env=wrong_env, cwd=tmp_path)
    assert wrong.returncode == 1 and "UNREADABLE" in wrong.stdout and "Traceback" not in wrong.stderr

    missing = run_bot("rotate-keys", env=bot_env(DATABASE_URL=database_url), cwd=tmp_path)
    assert missing.returncode == 2 and "TRIAGE_ENCRYPTION_KEYS" in missing.stderr


# --- the key check -----------------------------------------------------------------------------


def test_key_check_on_an_empty_database_passes_and_creates_nothing(database_url):
    repo = open_repo(database_url, Cipher.generate_key(), migrate=True)
    assert repo.verify_keys()
    repo.require_matching_keys()
    check = repo.key_check()
    assert (check.sampled, check.secret_decrypts) == (0, None)
    assert count(database_url, "storage_meta") == 0
    repo.dispose()


def test_key_check_with_the_right_and_the_wrong_keys(database_url):
    key = Cipher.generate_key()
    repo = open_repo(database_url, key, migrate=True)
    fill(repo, 10)
    check = repo.key_check(sample=20)
    # spread over every encrypted column; the course tables (issue 33) are empty here
    assert check.sampled >= 16 and check.decrypted == check.sampled and check.secret_decrypts
    assert check.all_decrypt and repo.verify_keys()
    assert repo.key_check(sample=3).sampled == 3
    repo.dispose()

    wrong = open_repo(database_url, Cipher.generate_key())
    assert not wrong.verify_keys()
    check = wrong.key_check()
    assert check.decrypted == 0 and check.secret_decrypts is False
    with pytest.raises(KeysDoNotMatch) as info:
        wrong.require_matching_keys()
    message = str(info.value)
    assert "TRIAGE_ENCRYPTION_KEYS" in message and "\n" not in message and key not in message
    wrong.dispose()

    # the old key alone, after the data moved on to a new one, does not match either
    both = open_repo(database_url, Cipher.generate_key(), key)
    both.rotate_keys()
    both.dispose()
    stale = open_repo(database_url, key)
    assert not stale.verify_keys()
    stale.dispose()
