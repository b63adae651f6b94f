"""Placeholders in the texts staff write (campaign texts and parameters, reminder messages, the cart link).

Only plain ``{name}`` placeholders from a known list are allowed: no format
spec (``{name:>99999}``), conversion (``{name!r}``), index or attribute
(``{name[0]}``, ``{name.x}``), positional field (``{}``, ``{0}``) or nesting.
``{{`` and ``}}`` are literal braces. Texts are checked when staff save
them, and filled in without ``str.format``, so a text stored before this
check cannot break a send either.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import Any


class PlaceholderError(ValueError):
    """A text whose placeholders are not all known, plain ``{name}`` ones; the message names the culprit."""


def check(text: str, allowed: Iterable[str]) -> None:
    """Raise :class:`PlaceholderError` unless every placeholder in ``text`` is ``{name}`` for a name in ``allowed``."""
    allowed = tuple(allowed)
    known = " ".join("{" + name + "}" for name in allowed)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise PlaceholderError(f"{error} (write {{{{ and }}}} for literal braces)") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if conversion or spec:
            raise PlaceholderError(f"{shown}: write placeholders plainly, like {{{field or 'name'}}}, "
                                   f"without '!' or ':' (known: {known})")
        if field not in allowed:
            raise PlaceholderError(f"unknown placeholder {shown} (known: {known})")


def fill(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with its placeholders replaced by ``values`` (an unknown or malformed one by nothing)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return text
    return "".join(literal + (str(values.get(field, "")) if field is not None else "")
                   for literal, field, _, _ in parsed)
