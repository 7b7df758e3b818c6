"""Logins of the review page: a token pasted once becomes a signed cookie session, and every
form carries a CSRF token bound to that session.

The cookie holds ``<token id>.<session id>.<expiry>.<signature>``: an HMAC-SHA256 over the rest
with ``server_session_secret`` (a random key per process when unset). It never holds the token
itself. Every request checks the signature and the expiry, then looks the token up again: a
revoked token ends its sessions at once, and the tenant, role and actor are the token's as
stored, never anything the browser sends. The cookie is ``HttpOnly``, ``SameSite=Strict``,
scoped to ``/``, and ``Secure`` when the page is served over https.

CSRF: each session has one token, ``HMAC(key, "csrf" + session id)``; forms carry it in a hidden
``csrf`` field and a POST whose field is missing or different is refused with 403 before
anything is read or written. The login form, which has no session yet, is protected the same
way by a short-lived pre-login cookie. Logging out forgets the session id in this process (and
deletes the cookie); with several processes, revoking the token is what ends every session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import structlog
from fastapi import Request
from fastapi.responses import Response

from auto_dev._exceptions import AutoDevError
from auto_dev.queries.tokens import Role, TokenQueries
from auto_dev.server.auth import Principal
from auto_dev.server.problems import from_error

log = structlog.get_logger(__name__)

COOKIE = "autodev_session"
LOGIN_COOKIE = "autodev_login"
CSRF_FIELD = "csrf"
_LOGIN_TTL_S = 1800
_FORM_TYPE = "application/x-www-form-urlencoded"


class PageError(Exception):
    """An error page: ``status`` and a message for the reviewer (rendered, escaped)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def page_error(exc: AutoDevError) -> PageError:
    """The error page of an auto-dev error: the API's status, the field at fault named."""
    problem = from_error(exc)
    field = f"{problem.field}: " if problem.field else ""
    return PageError(problem.status, field + problem.detail)


@dataclass(frozen=True, slots=True)
class WebSession:
    """A logged-in reviewer: the token's principal, the session id and its CSRF token."""

    principal: Principal
    session_id: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.principal.role.allows(Role.ADMIN)


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens with one key."""

    def __init__(self, secret: str | None, ttl_s: float) -> None:
        if secret is None:
            log.warning("session_secret_unset",
                        detail="review page sessions end when this process stops; set "
                               "AUTO_DEV_SERVER_SESSION_SECRET to share them between workers")
            self._key = secrets.token_bytes(32)
        else:
            self._key = hashlib.sha256(b"auto-dev session\0" + secret.encode()).digest()
        self.ttl_s = ttl_s
        self._ended: dict[str, float] = {}  # session id -> expiry, after a logout

    def _sign(self, *parts: str) -> str:
        mac = hmac.new(self._key, "\0".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, token_id: str) -> tuple[str, str]:
        """A new session of ``token_id``: (cookie value, session id)."""
        session_id = secrets.token_urlsafe(24)
        expires = str(int(time.time() + self.ttl_s))
        return ".".join([token_id, session_id, expires,
                         self._sign("session", token_id, session_id, expires)]), session_id

    def read(self, value: str | None) -> tuple[str, str] | None:
        """(token id, session id) of a valid, unexpired cookie value, else ``None``."""
        if not value or len(value) > 512:
            return None
        parts = value.split(".")
        if len(parts) != 4:
            return None
        token_id, session_id, expires, signature = parts
        expected = self._sign("session", token_id, session_id, expires)
        if not hmac.compare_digest(signature, expected):
            return None
        if not expires.isdigit() or int(expires) < time.time():
            return None
        if session_id in self._ended:
            return None
        return token_id, session_id

    def end(self, session_id: str) -> None:
        now = time.time()
        self._ended = {s: t for s, t in self._ended.items() if t > now}
        self._ended[session_id] = now + self.ttl_s

    def csrf_for(self, session_id: str) -> str:
        return self._sign("csrf", session_id)

    def login_nonce(self) -> tuple[str, str]:
        """(pre-login cookie value, the CSRF token the login form must send with it)."""
        nonce = secrets.token_urlsafe(18)
        expires = str(int(time.time() + _LOGIN_TTL_S))
        return f"{nonce}.{expires}.{self._sign('login', nonce, expires)}", self._sign(
            "login-csrf", nonce)

    def login_csrf_ok(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        parts = cookie.split(".")
        if len(parts) != 3:
            return False
        nonce, expires, signature = parts
        if not hmac.compare_digest(signature, self._sign("login", nonce, expires)):
            return False
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(submitted, self._sign("login-csrf", nonce))


def keys_of(request: Request) -> SessionKeys:
    """The app's keys, made on first use from its settings."""
    state = request.app.state
    keys: SessionKeys | None = getattr(state, "session_keys", None)
    if keys is None:
        settings = state.autodev.settings
        keys = SessionKeys(settings.server_session_secret, settings.server_session_ttl_s)
        state.session_keys = keys
    return keys


async def current_session(request: Request) -> WebSession | None:
    """The session of the request's cookie, if valid and its token is live and may review."""
    keys = keys_of(request)
    found = keys.read(request.cookies.get(COOKIE))
    if found is None:
        return None
    token_id, session_id = found
    tokens: TokenQueries = request.app.state.tokens
    info = await asyncio.to_thread(tokens.live, token_id)
    if info is None or not info.role.allows(Role.REVIEWER):
        return None
    return WebSession(Principal.of(info), session_id, keys.csrf_for(session_id))


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body as field -> first value; anything else is 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise PageError(415, "forms must be sent as application/x-www-form-urlencoded")
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def checked_form(request: Request, session: WebSession | None) -> tuple[WebSession,
                                                                              dict[str, str]]:
    """The session and form of a POST, after the CSRF check: no session is 401, a missing or
    wrong CSRF token is 403 (nothing is done either way)."""
    if session is None:
        raise PageError(401, "your session has ended: log in again")
    form = await read_form(request)
    submitted = form.get(CSRF_FIELD, "")
    if not submitted or not hmac.compare_digest(submitted, session.csrf):
        log.warning("csrf_rejected", path=request.url.path,
                    tenant_id=session.principal.tenant_id, actor=session.principal.actor)
        raise PageError(403, "the form's CSRF token is missing or wrong: reload the page and "
                             "try again")
    return session, form


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int
               ) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
