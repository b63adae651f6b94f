"""Staff accounts in the panel (admins only), on top of :mod:`wch.staff.accounts`."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose

from wch.admin.audit import audited
from wch.admin.auth import AdminOnly
from wch.db import db, read_only, transaction
from wch.models import Role, User
from wch.staff import accounts

# What each button does: the domain call, its audit action, and the message.
ACTIONS = {
    "disable": (lambda email, form: accounts.disable_user(email), "user.disable", "{email} is disabled."),
    "enable": (lambda email, form: accounts.enable_user(email), "user.enable", "{email} can log in again."),
    "delete": (lambda email, form: accounts.delete_user(email), "user.delete", "{email} is deleted."),
    "set-role": (lambda email, form: accounts.set_role(email, form.get("role", "")), "user.set_role",
                 "{email} is now {role}."),
    "reset-password": (lambda email, form: accounts.reset_password(email, form.get("password", "")),
                       "user.reset_password", "{email} has a new password."),
}


class UsersView(AdminOnly, BaseView):
    """``/admin/users/``: every staff account; create, disable, enable, delete, change role, reset password."""

    @expose("/")
    def index(self):
        with read_only():
            return self.render("admin/wch/users_list.html", users=accounts.list_users(),
                               roles=[r.value for r in Role])

    @expose("/create", methods=["POST"])
    def create(self):
        email, role = request.form.get("email", "").strip(), request.form.get("role", "")
        try:
            with transaction():
                user = accounts.create_user(email, request.form.get("password", ""), role=role)
                audited("user.create", f"user:{user.email}", role=user.role)
            flash(f"Created {user.role} {email}.", "success")
        except accounts.AccountError as error:
            flash(str(error), "danger")
        return redirect(url_for(".index"))

    @expose("/<int:user_id>/<action>", methods=["POST"])
    def act(self, user_id: int, action: str):
        if action not in ACTIONS:
            abort(404)
        change, audit_action, message = ACTIONS[action]
        try:
            with transaction():
                user = db.session.get(User, user_id)
                if user is None:
                    abort(404)
                email = user.email
                change(email, request.form)
                details = {"role": request.form.get("role")} if action == "set-role" else {}
                audited(audit_action, f"user:{email}", **details)
            flash(message.format(email=email, role=request.form.get("role", "")), "success")
        except accounts.AccountError as error:
            flash(str(error), "danger")
        return redirect(url_for(".index"))
