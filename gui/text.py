"""The one way a page puts a registry string (a name, a value, a path, a message about them) into Streamlit markdown:
as text, never as markup (an image, a link, a heading, a colour, an icon)."""
from __future__ import annotations

import re
from typing import Any

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all also stops GFM's
# autolinks (`http\:\/\/`), Streamlit's `:icon:` and `:color[...]` directives and `$math$`.
_MARKUP = re.compile(r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]""")
_BACKTICKS = re.compile(r"`+")


def md(value: Any, code: bool = False) -> str:
    """`value` as literal text inside Streamlit markdown; with `code`, as an inline code span (monospace)."""
    text = "" if value is None else str(value)
    if not code:
        return _MARKUP.sub(r"\\\g<0>", text)
    text = " ".join(text.splitlines())  # a blank line would end the span's paragraph and free what follows
    if not text.strip():
        return _MARKUP.sub(r"\\\g<0>", text)
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"
