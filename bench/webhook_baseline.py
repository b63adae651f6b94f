"""The webhooks benchmark's web app: wch's, plus a baseline endpoint that only checks a delivery and parses it.

``gunicorn 'bench.webhook_baseline:create_app()'`` serves wch's app as usual
and, under ``/baseline``, the same ``POST /webhooks/woocommerce`` cut down to
what any webhook receiver must do: check the signature and parse the JSON. The
baseline is served by the same gunicorn to the same client, so the two rates
compare what wch adds (the snapshot, the delivery id and the job, committed,
then published) and nothing else.
"""

from __future__ import annotations

import json

from flask import Flask, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import wch
from wch import runtime
from wch.store import signature

BASELINE = "/baseline"


def create_app() -> Flask:
    app = wch.create_app()
    with app.app_context():
        secret = runtime.settings().woocommerce_webhook_secret
    baseline = Flask("baseline")

    @baseline.post("/webhooks/woocommerce")
    def receive():
        body = request.get_data(cache=False)
        if not signature.valid_signature(body, request.headers.get(signature.HEADER), secret):
            return jsonify(outcome="invalid signature"), 401
        payload = json.loads(body)
        return jsonify(outcome="recorded", id=payload.get("id")), 200

    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {BASELINE: baseline})
    return app
