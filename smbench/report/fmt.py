"""Number formatting shared by every renderer (registered as Jinja2 filters).

One place decides how a value is shown, so the markdown and the HTML agree and
tests can parse numbers back with known precision.
"""
from __future__ import annotations

from ..units import human_bytes

MB = 1024 * 1024


def num(x, digits: int = 1) -> str:
    """Fixed decimals with thousands separators; '-' for missing."""
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def sig(x, digits: int = 3) -> str:
    """About `digits` significant figures, never scientific notation."""
    if x is None:
        return "-"
    ax = abs(x)
    if ax == 0:
        return "0"
    decimals = max(0, digits - 1 - int(_floor_log10(ax)))
    return f"{x:,.{min(decimals, 9)}f}"


def _floor_log10(x: float) -> float:
    import math

    return math.floor(math.log10(x))


def pct(x, digits: int = 1) -> str:
    """A fraction shown as percent."""
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def times(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}x"


def mb(n, digits: int = 3) -> str:
    return "-" if n is None else f"{n / MB:,.{digits}f}"


def duration_us(us) -> str:
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:,.2f} s"
    if us >= 1000:
        return f"{us / 1000:,.2f} ms"
    return f"{us:,.1f} µs"


def md(text) -> str:
    """A user string made safe for a markdown table cell or paragraph."""
    s = "" if text is None else str(text)
    for a, b in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`"),
                 ("\r", " "), ("\n", " ")):
        s = s.replace(a, b)
    return s


def mdcode(text) -> str:
    """A command as a markdown code span, or escaped plain text when a code span could not hold it."""
    s = "" if text is None else str(text)
    return f"`{s}`" if md(s) == s else md(s)


FILTERS = {"mdcode": mdcode, "num": num, "sig": sig, "pct": pct, "times": times, "bytes": human_bytes, "mb": mb,
           "dur": duration_us, "md": md}


def environment(autoescape: bool):
    """The Jinja2 environment for report templates; HTML autoescapes every value."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("smbench.report", "templates"),
                             autoescape=autoescape, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(FILTERS)
    return env
