"""console.sessions: the session cookie is sealed (Fernet), bound to its lifetime, rotatable,
and refuses anything it did not seal; console.guard's origin check."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.fernet import Fernet
from pydantic import SecretStr

from console.guard import same_origin
from console.pages_login import safe_next
from console.sessions import Session, SessionCodec, tokens_match

KEY = "kjs_" + "A" * 43


def codec(*keys: str, lifetime_s: float = 3600) -> SessionCodec:
    return SessionCodec([SecretStr(k) for k in keys], lifetime_s)


def test_a_session_round_trips_and_the_credential_is_not_readable_in_the_cookie() -> None:
    box = codec(Fernet.generate_key().decode())
    session = Session.start(KEY).acting_for("tenant-a")
    sealed = box.seal(session)
    assert KEY not in sealed and "tenant-a" not in sealed
    assert box.open(sealed) == session


@pytest.mark.parametrize("value", [None, "", "garbage", "gAAAAA" + "x" * 100])
def test_anything_not_sealed_by_the_console_is_no_session(value: str | None) -> None:
    assert codec(Fernet.generate_key().decode()).open(value) is None


def test_a_tampered_cookie_or_another_key_opens_nothing() -> None:
    key = Fernet.generate_key().decode()
    sealed = codec(key).seal(Session.start(KEY))
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    assert codec(key).open(flipped) is None
    assert codec(Fernet.generate_key().decode()).open(sealed) is None


def test_keys_rotate_the_first_seals_every_one_opens() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_before = codec(old).seal(Session.start(KEY))
    rotated = codec(new, old)
    assert rotated.open(sealed_before) is not None
    assert codec(new).open(rotated.seal(Session.start(KEY))) is not None


def test_a_session_lasts_its_lifetime_from_the_login_not_from_the_last_change() -> None:
    box = codec(Fernet.generate_key().decode(), lifetime_s=60)
    session = Session.start(KEY, now=1000.0)
    assert box.open(box.seal(session), now=1059.0) is not None
    assert box.open(box.seal(session), now=1061.0) is None
    # Choosing a tenant re-seals the cookie, and keeps the login's time.
    assert box.open(box.seal(session.acting_for("t")), now=1061.0) is None
    assert box.open(box.seal(session), now=999.0) is None  # from the future: refused


def test_without_keys_each_process_makes_its_own() -> None:
    first, second = codec(), codec()
    assert first.ephemeral
    assert second.open(first.seal(Session.start(KEY))) is None


def test_the_csrf_token_is_fresh_per_session_and_compared_exactly() -> None:
    session = Session.start(KEY)
    assert session.csrf != Session.start(KEY).csrf
    assert len(session.csrf) >= 32
    assert tokens_match(session.csrf, session)
    assert not tokens_match(session.csrf[:-1], session)
    assert not tokens_match("", session)
    assert not tokens_match(None, session)


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({}, True),  # no browser: the CSRF token still guards the request
        ({"Origin": "http://127.0.0.1:8080"}, True),
        ({"Origin": "https://127.0.0.1:8080"}, True),  # TLS ended by a proxy in front
        ({"Referer": "http://127.0.0.1:8080/ui/jobs/x"}, True),
        ({"Origin": "http://127.0.0.1:8081"}, False),  # same site, another origin
        ({"Origin": "http://evil.test"}, False),
        ({"Origin": "null"}, False),
        ({"Referer": "http://evil.test/ui/"}, False),
        ({"Origin": "http://127.0.0.1:8080.evil.test"}, False),
        ({"Origin": "not a url"}, False),
    ],
)
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    request = make_mocked_request(
        "POST", "/ui/login", headers={"Host": "127.0.0.1:8080", **headers}
    )
    assert same_origin(request) is same


@pytest.mark.parametrize(
    ("wanted", "kept"),
    [
        ("/ui/jobs?status=failed", True),
        ("/ui/pipeline", True),
        ("https://evil.test/ui/", False),
        ("//evil.test/ui/", False),
        ("/v1/jobs", False),
        ("/ui/\\evil", False),
        ("", False),
        (None, False),
    ],
)
def test_after_login_only_a_console_page(wanted: str | None, kept: bool) -> None:
    assert safe_next(wanted) == (wanted if kept else "/ui/jobs")
