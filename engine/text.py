"""Free text from callers: trimmed, bounded, without control characters.

One checker for every text field (names, references, reasons): a length limit
counted on the text as sent (so the API's document can say it with
`maxLength`), then trimmed as `str.strip()` trims. Single-line fields refuse
every control character; multi-line ones (an admin's reason) allow newlines
and tabs.
"""

from __future__ import annotations

import re

from engine.errors import Refused

#: What `str.strip()` trims (the characters for which `str.isspace()` holds), spelled
#: out as a regular expression's character class for the API's document.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Never in single-line text (a character class's body).
CONTROL_CHARACTERS = r"\x00-\x1f\x7f"
#: Never in multi-line text: newlines and tabs are fine there.
MULTILINE_CONTROL_CHARACTERS = r"\x00-\x08\x0b-\x1f\x7f"

_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_MULTILINE_CONTROL = re.compile(f"[{MULTILINE_CONTROL_CHARACTERS}]")


def check_text(
    field: str,
    value: str | None,
    max_length: int,
    *,
    code: str = "invalid",
    multiline: bool = False,
) -> str | None:
    """`value` trimmed, or the refusal (`code`) naming `field`; None stays None."""
    if value is None:
        return None
    if len(value) > max_length:
        raise Refused("invalid", code, f"`{field}` is too long: at most {max_length} characters.")
    value = value.strip()
    control = _MULTILINE_CONTROL if multiline else _CONTROL
    if control.search(value):
        raise Refused("invalid", code, f"`{field}` must not contain control characters.")
    return value
