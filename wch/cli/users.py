"""``wch users``: staff accounts of the admin panel, with the same rules as the panel's Users screen."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from wch.cli.audit import audited
from wch.cli.output import echo_json, echo_table, json_option, refusals
from wch.db import read_only, transaction
from wch.models import Role
from wch.staff import MIN_PASSWORD, AccountError, accounts

ROLES = click.Choice([r.value for r in Role])


@click.group()
def users() -> None:
    """Staff accounts that log in to /admin/."""


@users.command()
@click.argument("email")
@click.option("--role", type=ROLES, required=True,
              help="admin can act (retry, cancel, clean up, edit); viewer can only look.")
@with_appcontext
def create(email: str, role: str) -> None:
    """Create a staff account. The password is prompted twice, or read from standard input when piped."""
    email = email.strip()
    if not accounts.EMAIL.match(email):
        raise click.BadParameter(f"{email!r} is not an e-mail address", param_hint="EMAIL")
    with read_only():
        if accounts.find_user(email) is not None:
            raise click.ClickException(f"a user with e-mail {email} already exists")
    password = read_password()
    with refusals(AccountError), transaction():
        user = accounts.create_user(email, password, role=role)
        audited("user.create", f"user:{user.email}", role=role)
    click.echo(f"created {role} {email}")


@users.command("list")
@json_option
@with_appcontext
def list_users(as_json: bool) -> None:
    """Every staff account (never the password hashes)."""
    with read_only():
        rows = [user.to_dict() for user in accounts.list_users()]
    if as_json:
        echo_json(rows)
        return
    echo_table(["email", "role", "state", "created", "last log-in"],
               [[u["email"], u["role"], "disabled" if u["disabled_at"] else "active", u["created_at"][:10],
                 u["last_login_at"][:16].replace("T", " ") if u["last_login_at"] else "never"] for u in rows])


@users.command()
@click.argument("email")
@with_appcontext
def disable(email: str) -> None:
    """Refuse the account's log-ins and end its sessions at their next request."""
    with refusals(AccountError), transaction():
        user = accounts.disable_user(email)
        audited("user.disable", f"user:{user.email}")
    click.echo(f"disabled {user.email}; its sessions end at their next request")


@users.command()
@click.argument("email")
@with_appcontext
def enable(email: str) -> None:
    """Let a disabled account log in again."""
    with refusals(AccountError), transaction():
        user = accounts.enable_user(email)
        audited("user.enable", f"user:{user.email}")
    click.echo(f"enabled {user.email}")


@users.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def delete(email: str, yes: bool) -> None:
    """Remove the account for good (its audit entries stay)."""
    if not yes:
        click.confirm(f"Delete {email} for good?", abort=True)
    with refusals(AccountError), transaction():
        deleted = accounts.delete_user(email)
        audited("user.delete", f"user:{deleted}")
    click.echo(f"deleted {deleted}")


@users.command("set-role")
@click.argument("email")
@click.argument("role", type=ROLES)
@with_appcontext
def set_role(email: str, role: str) -> None:
    """Make the account an admin or a viewer; its sessions end so the new rights apply at once."""
    with refusals(AccountError), transaction():
        user = accounts.set_role(email, role)
        audited("user.set_role", f"user:{user.email}", role=role)
    click.echo(f"{user.email} is now {role}")


@users.command("reset-password")
@click.argument("email")
@with_appcontext
def reset_password(email: str) -> None:
    """Set a new password (prompted twice, or read from standard input) and end the account's sessions."""
    with read_only(), refusals(AccountError):
        accounts.get_user(email)
    password = read_password()
    with refusals(AccountError), transaction():
        user = accounts.reset_password(email, password)
        audited("user.reset_password", f"user:{user.email}")
    click.echo(f"new password set for {user.email}; its sessions end at their next request")


def read_password() -> str:
    """Prompt twice without echo on a terminal; otherwise read the first line of standard input."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        raise click.ClickException(f"the password must be at least {MIN_PASSWORD} characters long")
    return password
