"""Rendering the review pages: Jinja2 with autoescaping always on, and headers that keep a page
from running anything but its own static files.

Candidate code, episode data and LLM messages are hostile input. Templates never mark them safe;
the Content-Security-Policy forbids inline scripts and styles as a second line of defence.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from auto_dev.server.web_session import CSRF_FIELD, WebSession

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _format_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


_ENV = Environment(loader=PackageLoader("auto_dev.server", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(when=_when, number=_format_number, pretty=_pretty,
                    short=lambda v: str(v)[:12] if v else "")


def render_page(request: Request, template: str, session: WebSession | None, *,
           status_code: int = 200, **context: Any) -> HTMLResponse:
    """``template`` with ``context``, the session (for the header and the CSRF field)."""
    html = _ENV.get_template(template).render(
        request_path=request.url.path, session=session, csrf_field=CSRF_FIELD,
        csrf=session.csrf if session is not None else "", **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
