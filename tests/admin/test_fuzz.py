"""No input makes the panel fail: every route, with generated query strings and form fields, as an admin and as a
viewer, on SQLite and PostgreSQL, answers 2xx, 3xx or 4xx, never 5xx.

Each example requests every route once, so every route sees every kind of
value; the example counts are kept small so the suite stays within its budget.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.support import woo
from tests.support.apps import DATABASES, overrides
from tests.support.panel import add_job, client_for, csrf_token, log_in, make_user
from wch.db import db
from wch.models import Campaign, Contact, User

EXAMPLES = 10
PATH_ARGUMENT = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?[a-z_]+>")
# Names the panel's forms and links use, so generated values reach the code that reads them.
FIELDS = ("status", "type", "since", "q", "before", "page", "idle", "action", "actor", "topic", "sync", "opted_out",
          "next", "start", "start_at", "email", "password", "role", "name", "kind", "text", "audience",
          "template_name", "template_language", "template_parameters", "delay_hours", "message", "cart_url",
          "enabled", "ids", "confirm")
# Values that broke, or could break, a parser: cursors, huge numbers, far dates, odd digits, NUL, long text.
TRICKY = ("²", "٣", "9" * 30, "-1", "0", "1e309", "nan", "inf", "0001-01-01T00:00:00+05:00~1",
          "9999-12-31T23:59:59-05:00~x", "2026-01-01T00:00:00+00:00~" + "9" * 25, "2026-01-01T00:00:00~1",
          "9999-12-31T23:59", "0001-01-01T00:00", "99999-01-01", "\x00", "a\x00b", "order " + "9" * 30,
          "#" + "9" * 30, "+" + "9" * 30, "sku " + "x" * 300, "product -1", "cart 1", "campaign 99", "+4915112345678",
          "<script>alert(1)</script>", "x" * 5000, "now", "at", "all", "csv", "text", "template", "admin", "viewer",
          "retry", "cancel", "yes", "failed", "24h", "expired", "pending", "{name}", "{", "}}")
VALUES = st.one_of(st.sampled_from(TRICKY), st.text(max_size=40))
PARAMS = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=10)), VALUES, max_size=12)
PATH_VALUES = st.one_of(st.sampled_from(("1", "2", "0", "999", "2147483647", "2147483648", "9" * 30, "x", "²",
                                         "00000000-0000-0000-0000-000000000000", "pause", "retry", "disable",
                                         "set-role", "opt-out")),
                        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"),
                                min_size=1, max_size=20))


@pytest.fixture
def env(request):
    # Many log-ins from one address in one test: the address limit is not what this test is about.
    unlimited = {"WCH_LOGIN_LIMIT_PER_ADDRESS": "100000 per minute", "WCH_LOGIN_LIMIT_PER_ACCOUNT": "100000 per minute"}
    return woo.sync_env("http://127.0.0.1:9") | unlimited | overrides(request)


def request(client, method: str, url: str, params: dict, token: str):
    if method == "GET":
        response = client.get(url, query_string=params)
    else:
        response = client.post(url, data={**params, "csrf_token": token})
    assert response.status_code < 500, (method, url, params, response.get_data(as_text=True)[-2000:])
    return response


def routes(app) -> list[tuple[str, str]]:
    """(method, rule) of every route of the panel and the log-in: the URL map, static files aside."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static") or not rule.rule.startswith(("/admin", "/login", "/logout")):
            continue
        found += [(method, rule.rule) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert len(found) > 30
    return found


def fill(rule: str, data) -> str:
    """``rule`` with its ``<…>`` parts drawn: mostly the ids of rows that exist, sometimes anything."""
    def part(match):
        return data.draw(PATH_VALUES)
    return PATH_ARGUMENT.sub(part, rule)


def seed() -> None:
    """A row of each kind the routes look up, so their pages render more than a 404."""
    add_job(status="failed")
    db.session.add_all([Contact(phone="+4915112345678", name="Ana"),
                        Campaign(name="Spring", text="Hi", audience="csv", status="draft", total=0, sent=0,
                                 delivered=0, read=0, failed=0, skipped=0)])
    db.session.commit()


@pytest.mark.parametrize("app", DATABASES, indirect=True)
@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_every_panel_route_answers_any_input_without_a_server_error(app, role):
    make_user("admin@example.com", "admin")
    make_user("other@example.com", "viewer")  # user 2: what the user routes act on
    if role == "viewer":
        make_user("viewer@example.com", "viewer")
    email = f"{role}@example.com"
    seed()
    client = client_for(app)
    table = routes(app)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data())
    def every_route(data):
        if client.get("/admin/").status_code != 200:
            log_in(client, email)  # an earlier example logged out (or changed this account)
        token = csrf_token(client, "/admin/")
        for method, rule in table:
            if rule == "/logout":
                continue
            request(client, method, fill(rule, data), data.draw(PARAMS), token)

    every_route()
    db.session.rollback()
    assert db.session.scalar(select(User.role).where(User.email == "admin@example.com")) == "admin"


@pytest.mark.parametrize("app", DATABASES, indirect=True)
def test_every_tricky_value_in_every_field_of_every_route(app):
    """The sweep beside the random search: each tricky value in every field at once, on every route, as an admin."""
    make_user("admin@example.com", "admin")
    make_user("other@example.com", "viewer")
    seed()
    client = client_for(app)
    log_in(client, "admin@example.com")
    token = csrf_token(client, "/admin/")
    for method, rule in routes(app):
        if rule == "/logout" or rule.startswith("/login"):
            continue
        for value in TRICKY:
            url = PATH_ARGUMENT.sub("2" if "users" in rule else "1", rule)
            request(client, method, url, dict.fromkeys(FIELDS, value), token)
