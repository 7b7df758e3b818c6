"""Session cookies and CSRF tokens of the review page: signed, expiring, bound to one session."""

from __future__ import annotations

import time

import pytest

from auto_dev.server.web_session import SessionKeys

SECRET = "k" * 40


class TestSessionKeys:
    """A cookie is valid only as issued, before its expiry, with the key that signed it."""

    def test_round_trip_and_tampering(self) -> None:
        keys = SessionKeys(SECRET, ttl_s=60)
        cookie, session_id = keys.issue("tok1")
        assert keys.read(cookie) == ("tok1", session_id)
        token_id, sid, expires, signature = cookie.split(".")
        for forged in (f"tok2.{sid}.{expires}.{signature}",
                       f"{token_id}.{sid}.{int(expires) + 3600}.{signature}",
                       f"{token_id}.other.{expires}.{signature}", cookie + "x", "", "a.b.c"):
            assert keys.read(forged) is None, forged
        assert SessionKeys("j" * 40, ttl_s=60).read(cookie) is None  # another key

    def test_expiry(self, monkeypatch: pytest.MonkeyPatch) -> None:
        keys = SessionKeys(SECRET, ttl_s=60)
        cookie, _ = keys.issue("tok1")
        later = time.time() + 61
        monkeypatch.setattr(time, "time", lambda: later)
        assert keys.read(cookie) is None

    def test_logout_ends_the_session_only(self) -> None:
        keys = SessionKeys(SECRET, ttl_s=60)
        first, first_id = keys.issue("tok1")
        second, _ = keys.issue("tok1")
        keys.end(first_id)
        assert keys.read(first) is None and keys.read(second) is not None

    def test_csrf_is_per_session(self) -> None:
        keys = SessionKeys(SECRET, ttl_s=60)
        _, a = keys.issue("tok1")
        _, b = keys.issue("tok1")
        assert keys.csrf_for(a) == keys.csrf_for(a) != keys.csrf_for(b)

    def test_login_csrf(self) -> None:
        keys = SessionKeys(None, ttl_s=60)  # a random key per process
        cookie, token = keys.login_nonce()
        assert keys.login_csrf_ok(cookie, token)
        other_cookie, other_token = keys.login_nonce()
        assert not keys.login_csrf_ok(cookie, other_token)
        assert not keys.login_csrf_ok(None, token) and not keys.login_csrf_ok(cookie, "")
        assert not SessionKeys(None, ttl_s=60).login_csrf_ok(other_cookie, other_token)
