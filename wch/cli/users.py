"""``wch users``: staff accounts of the admin panel."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from wch.cli.output import echo_json, echo_table, json_option, refusals
from wch.db import db, read_only, transaction
from wch.models import Role, User
from wch.staff import EMAIL, MIN_PASSWORD, AccountError, create_user, find_user


@click.group()
def users() -> None:
    """Staff accounts that log in to /admin/."""


@users.command()
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True,
              help="admin can act (retry, cancel, clean up, edit); viewer can only look.")
@with_appcontext
def create(email: str, role: str) -> None:
    """Create a staff account. The password is prompted twice, or read from standard input when piped."""
    email = email.strip()
    if not EMAIL.match(email):
        raise click.BadParameter(f"{email!r} is not an e-mail address", param_hint="EMAIL")
    with read_only():
        if find_user(email) is not None:
            raise click.ClickException(f"a user with e-mail {email} already exists")
    password = read_password()
    with refusals(AccountError), transaction():
        create_user(email, password, role=role)
    click.echo(f"created {role} {email}")


@users.command("list")
@json_option
@with_appcontext
def list_users(as_json: bool) -> None:
    """Every staff account (never the password hashes)."""
    with read_only():
        rows = list(db.session.scalars(select(User).order_by(User.email)))
    if as_json:
        echo_json([{"email": u.email, "role": u.role, "created_at": u.created_at.isoformat(),
                    "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None} for u in rows])
        return
    echo_table(["email", "role", "created", "last log-in"],
               [[u.email, u.role, f"{u.created_at:%Y-%m-%d}", f"{u.last_login_at:%Y-%m-%d %H:%M}"
                 if u.last_login_at else "never"] for u in rows])


def read_password() -> str:
    """Prompt twice without echo on a terminal; otherwise read the first line of standard input."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        raise click.ClickException(f"the password must be at least {MIN_PASSWORD} characters long")
    return password
