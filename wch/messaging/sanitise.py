"""Values from the store made safe to put into a message from the store's verified number.

A guest checkout lets anyone type any billing name: without care, the
store's number would send "Hi https://evil.example, ..." to a stranger.
Names keep their first word's letters only, and nothing that looks like a
link, an address or markup; references keep letters, digits and a few
separators; both are capped in length. Meta also refuses template
parameters with new lines, tabs or runs of spaces, which none of these has.
"""

from __future__ import annotations

import re
import unicodedata

NAME_LIMIT = 30
REFERENCE_LIMIT = 20
# A scheme, "www.", an address, or a dot followed by two letters or more (example.com, bit.ly).
_LINKISH = re.compile(r"(://|www\.|@|\w\.[^\W\d_]{2,})", re.IGNORECASE)
_REFERENCE = re.compile(r"[^0-9A-Za-z#/_-]")


def safe_name(raw: str | None, *, fallback: str = "there") -> str:
    """The first word of ``raw`` as a greeting name, or ``fallback`` when nothing safe is left of it."""
    words = unicodedata.normalize("NFKC", raw or "").split()
    if not words or _LINKISH.search(words[0]):
        return fallback
    kept = "".join(c for c in words[0] if c.isalpha() or c in "'-.").strip("'-.")
    return kept[:NAME_LIMIT] or fallback


def safe_reference(raw: str | None, *, fallback: str) -> str:
    """An order number (or the like) of letters, digits and ``#/_-`` only, or ``fallback`` if none is left."""
    text = unicodedata.normalize("NFKC", raw or "")
    if _LINKISH.search(text):
        return fallback
    return _REFERENCE.sub("", text)[:REFERENCE_LIMIT] or fallback
