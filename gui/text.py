"""The one way a page puts a registry string (a name, a value, a path, a message about them) into Streamlit markdown:
as text, never as markup (an image, a link, a heading, a colour, an icon)."""
from __future__ import annotations

import re
from typing import Any

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all also stops Streamlit's
# `:icon:` and `:color[...]` directives and `$math$`.
_MARKUP = re.compile(r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]""")
# GFM turns bare URLs, www. names and e-mail addresses in text into links after escapes are resolved; an invisible
# word joiner after `http`, `www` or `@` leaves them text.
_AUTOLINK = re.compile(r"(?i)\b(?:https?|ftp)(?=:)|\bwww(?=\.)|@")
_BACKTICKS = re.compile(r"`+")
WORD_JOINER = "\u2060"


def md(value: Any, code: bool = False) -> str:
    """`value` as literal text inside Streamlit markdown; with `code`, as an inline code span (monospace)."""
    text = "" if value is None else str(value)
    if code:
        text = " ".join(text.splitlines())  # a blank line would end the span's paragraph and free what follows
    if not code or not text.strip():
        return _MARKUP.sub(r"\\\g<0>", _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, text))
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"
