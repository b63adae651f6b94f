"""What every response and request of the app goes through: security headers, a size cap, proxies, NUL bytes.

- Headers: a Content-Security-Policy that allows only the app's own scripts
  (no inline script: the panel's code lives in ``static/js/``), no framing,
  and no referrer sent to other sites.
- ``MAX_CONTENT_LENGTH`` (``WCH_MAX_UPLOAD_MB``): a larger body is refused
  with 413 before it is read; a request without a logged-in session (the
  log-in form) may send at most 64 KiB.
- ``WCH_TRUSTED_PROXIES``: how many proxies in front set ``X-Forwarded-For``
  and ``-Proto``, so throttling and the audit trail see the client's address.
- A NUL byte in a query string or form field is refused with 400: no field
  of the panel can hold one, and PostgreSQL refuses it in text; an id in a
  URL larger than a database integer is a 404.
"""

from __future__ import annotations

from flask import Flask, Response, abort, request, session
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from wch.config import Settings
from wch.web.csrf import is_csrf_exempt

ANONYMOUS_BODY_LIMIT = 64 * 1024
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    # Bootstrap's and Chart.js's inline style attributes; styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class DatabaseInteger(IntegerConverter):
    """``<int:…>`` in a URL, at most what a database integer column holds: larger ids are 404, not a crash."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002  (werkzeug's name)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def init_security(app: Flask, settings: Settings) -> None:
    """Headers, size cap, proxies and input rules for ``app``; call before any blueprint is registered."""
    app.url_map.converters["int"] = DatabaseInteger
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    @app.before_request
    def refuse_nul_bytes() -> None:
        if is_csrf_exempt(request.path):
            return  # webhooks read their raw, signed body themselves, under caps of their own
        if "_user_id" not in session:
            request.max_content_length = ANONYMOUS_BODY_LIMIT
        fields = [*request.args.items(multi=True)]
        if request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded",
                                                             "multipart/form-data"):
            fields += request.form.items(multi=True)
        if any("\x00" in key or "\x00" in value for key, value in fields):
            abort(400, "a field holds a NUL byte")

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
