"""Terminal output -> a stream of simple display actions (no Qt in here).

:class:`AnsiParser` turns decoded program output into :class:`Text`,
:class:`Newline`, :class:`CarriageReturn`, :class:`Backspace` and
:class:`EraseLine` actions, in the spirit of qtconsole's ``AnsiCodeProcessor``:

* SGR (``ESC [ ... m``): bold, dim, italic, underline, inverse, strike-through,
  8/16 colours, 256 colours (``38;5;n``), true colour (``38;2;r;g;b``, also the
  colon forms), default colours and reset.  The current style travels with each
  :class:`Text` as an immutable :class:`Format`.
* ``ESC [ K`` becomes :class:`EraseLine`, ``ESC [ G`` (column 1) a carriage
  return; every other CSI, OSC, charset and two-character escape is dropped, as
  are C0 controls other than ``\\n``, ``\\r``, ``\\b`` and ``\\t``.
* A sequence cut in two by the pipe (``"\\x1b[3"`` + ``"1m"``) is held back until
  the rest arrives.

Colours stay abstract (a palette index or an RGB triple); :func:`xterm_rgb`
resolves them for a given 16-colour palette, so the renderer can pick a light or
a dark palette.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Union

RGB = tuple[int, int, int]
#: A palette index (0-255) or an exact RGB colour.
Color = Union[int, RGB]


class Format(NamedTuple):
    """The SGR state that applies to a run of text (a tuple: hashing and
    comparing it is cheap, and the renderer does both per run)."""

    fg: Color | None = None
    bg: Color | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    inverse: bool = False
    strike: bool = False


DEFAULT_FORMAT = Format()


@dataclass(frozen=True, slots=True)
class Text:
    """Printable text (never contains control characters) in format ``fmt``."""

    text: str
    fmt: Format = DEFAULT_FORMAT


@dataclass(frozen=True, slots=True)
class Newline:
    """End the current line (``\\n``; ``\\r\\n`` counts as one)."""


@dataclass(frozen=True, slots=True)
class CarriageReturn:
    """Move to the start of the current line; later text overwrites it."""


@dataclass(frozen=True, slots=True)
class Backspace:
    """Move one column to the left (not past the start of the line)."""


@dataclass(frozen=True, slots=True)
class EraseLine:
    """``ESC [ n K``: 0 erases to the end of the line, 1 to its start, 2 all of it."""

    mode: int = 0


Action = Union[Text, Newline, CarriageReturn, Backspace, EraseLine]

_NEWLINE = Newline()
_CR = CarriageReturn()
_BACKSPACE = Backspace()

# One token per match; the text between matches is printable.
_TOKEN = re.compile(
    r"""
      (?P<nl>\r?\n)
    | (?P<cr>\r)
    | (?P<bs>\x08)
    | \x1b\[(?P<params>[0-?]*)[\x20-/]*(?P<final>[@-~])     # CSI
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)                     # OSC ... BEL | ST
    | \x1b[PX^_][^\x1b]*\x1b\\                              # DCS, SOS, PM, APC
    | \x1b[\x20-/]*[0-OQ-WYZ\\`-~]                          # other escapes
    | (?P<esc>\x1b)                                         # lone or unfinished
    | [\x00-\x07\x0b-\x1a\x1c-\x1f\x7f]                     # other C0 controls
    """,
    re.VERBOSE,
)
# What an escape sequence may look like when its end has not arrived yet.
_UNFINISHED = re.compile(
    r"\x1b(?:\[[0-?]*[\x20-/]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[\x20-/]*)\Z"
)
#: An SGR sequence; its one group is the parameter string.
SGR_RE = re.compile(r"\x1b\[([0-9;:]*)m")
# Longest unfinished sequence held back; anything longer is treated as garbage.
MAX_PENDING = 4096

# Standard "basic" colours for the 16 ANSI colours, used when no palette is given.
XTERM_16: tuple[RGB, ...] = (
    (0x00, 0x00, 0x00), (0xCD, 0x00, 0x00), (0x00, 0xCD, 0x00), (0xCD, 0xCD, 0x00),
    (0x00, 0x00, 0xEE), (0xCD, 0x00, 0xCD), (0x00, 0xCD, 0xCD), (0xE5, 0xE5, 0xE5),
    (0x7F, 0x7F, 0x7F), (0xFF, 0x00, 0x00), (0x00, 0xFF, 0x00), (0xFF, 0xFF, 0x00),
    (0x5C, 0x5C, 0xFF), (0xFF, 0x00, 0xFF), (0x00, 0xFF, 0xFF), (0xFF, 0xFF, 0xFF),
)
_CUBE = (0, 95, 135, 175, 215, 255)


def xterm_rgb(color: Color, palette: Sequence[RGB] = XTERM_16) -> RGB:
    """The RGB value of ``color``: indices 0-15 come from ``palette``, 16-231 are
    the 6x6x6 colour cube and 232-255 the grey ramp of xterm's 256 colours."""
    if isinstance(color, tuple):
        return color
    if color < 16:
        return palette[color]
    if color < 232:
        n = color - 16
        return _CUBE[n // 36], _CUBE[n // 6 % 6], _CUBE[n % 6]
    grey = 8 + 10 * (color - 232)
    return grey, grey, grey


def _extended_color(params: list[list[int | None]], i: int) -> tuple[Color | None, int]:
    """Parse the colour after a 38/48 at ``params[i]``; return it and the next index.

    Handles ``38;5;n``, ``38;2;r;g;b`` and the colon forms ``38:5:n``,
    ``38:2::r:g:b`` and ``38:2:r:g:b``.
    """
    head = params[i]
    if len(head) > 1:  # colon form: everything is in this one parameter
        sub = [0 if p is None else p for p in head[1:]]
        nxt = i + 1
    else:  # semicolon form: the arguments are the following parameters
        sub = [0 if p[0] is None else p[0] for p in params[i + 1 : i + 6]]
        nxt = None
    if not sub:
        return None, i + 1
    kind = sub[0]
    if kind == 5 and len(sub) >= 2:
        return min(sub[1], 255), nxt if nxt is not None else i + 3
    if kind == 2:
        if nxt is not None:  # colon form, optional colour-space id
            rgb = sub[-3:] if len(sub) >= 4 else None
        else:
            rgb = sub[1:4] if len(sub) >= 4 else None
            nxt = i + 5
        if rgb is None:
            return None, nxt
        r, g, b = (min(v, 255) for v in rgb)
        return (r, g, b), nxt
    return None, nxt if nxt is not None else i + 2


@lru_cache(maxsize=1024)
def apply_sgr(fmt: Format, params: str) -> Format:
    """The format after the SGR sequence ``ESC [ params m``."""
    if not params:
        return DEFAULT_FORMAT
    parsed: list[list[int | None]] = [
        [int(v) if v.isdigit() else None for v in p.split(":")] for p in params.split(";")
    ]
    i = 0
    changes: dict[str, object] = {}
    while i < len(parsed):
        code = parsed[i][0] or 0
        i += 1
        if code == 0:
            fmt, changes = DEFAULT_FORMAT, {}
        elif code == 1:
            changes["bold"] = True
        elif code == 2:
            changes["dim"] = True
        elif code == 3:
            changes["italic"] = True
        elif code in (4, 21):
            changes["underline"] = not (len(parsed[i - 1]) > 1 and parsed[i - 1][1] == 0)
        elif code == 7:
            changes["inverse"] = True
        elif code == 9:
            changes["strike"] = True
        elif code == 22:
            changes["bold"] = changes["dim"] = False
        elif code == 23:
            changes["italic"] = False
        elif code == 24:
            changes["underline"] = False
        elif code == 27:
            changes["inverse"] = False
        elif code == 29:
            changes["strike"] = False
        elif 30 <= code <= 37:
            changes["fg"] = code - 30
        elif 40 <= code <= 47:
            changes["bg"] = code - 40
        elif 90 <= code <= 97:
            changes["fg"] = code - 90 + 8
        elif 100 <= code <= 107:
            changes["bg"] = code - 100 + 8
        elif code == 39:
            changes["fg"] = None
        elif code == 49:
            changes["bg"] = None
        elif code in (38, 48):
            color, i = _extended_color(parsed, i - 1)
            if color is not None:
                changes["fg" if code == 38 else "bg"] = color
        # anything else (blink, fonts, overline, ...) is ignored
    return fmt._replace(**changes) if changes else fmt


class AnsiParser:
    """Incremental parser for one output stream (keep one per stream: the SGR
    state and any half-received escape sequence belong to that stream).

    ``feed()`` returns a generator; consume it fully before the next ``feed()``.
    """

    __slots__ = ("format", "_pending")

    def __init__(self) -> None:
        #: The SGR state that applies to the next text.
        self.format: Format = DEFAULT_FORMAT
        self._pending = ""

    @property
    def has_pending(self) -> bool:
        """True while an unfinished escape sequence is held back."""
        return bool(self._pending)

    def reset(self) -> None:
        self.format = DEFAULT_FORMAT
        self._pending = ""

    def feed(self, text: str) -> Iterator[Action]:
        if self._pending:
            text = self._pending + text
            self._pending = ""
        pos = 0
        for m in _TOKEN.finditer(text):
            start = m.start()
            if start > pos:
                yield Text(text[pos:start], self.format)
            pos = m.end()
            kind = m.lastgroup
            if kind == "nl":
                yield _NEWLINE
            elif kind == "cr":
                yield _CR
            elif kind == "bs":
                yield _BACKSPACE
            elif kind == "final":
                action = self._csi(m.group("params"), m.group("final"))
                if action is not None:
                    yield action
            elif kind == "esc":
                rest = len(text) - start
                if rest <= MAX_PENDING and _UNFINISHED.match(text, start):
                    self._pending = text[start:]
                    return
                # a malformed sequence: drop the ESC, show what follows as text
        if pos < len(text):
            yield Text(text[pos:], self.format)

    def skip(self, text: str) -> None:
        """Advance over ``text`` as :meth:`feed` would, without producing actions:
        only the SGR state and an unfinished trailing sequence are kept.  Cheap
        even for megabytes (it looks at the colour codes after the last reset)."""
        if self._pending:
            text = self._pending + text
            self._pending = ""
        esc = text.rfind("\x1b")
        if esc != -1 and len(text) - esc <= MAX_PENDING and _UNFINISHED.match(text, esc):
            self._pending = text[esc:]
            text = text[:esc]
        start = max(text.rfind("\x1b[0m"), text.rfind("\x1b[m"))
        if start != -1:
            self.format = DEFAULT_FORMAT
        for m in SGR_RE.finditer(text, max(start, 0)):
            self.format = apply_sgr(self.format, m.group(1))

    def _csi(self, params: str, final: str) -> Action | None:
        if final == "m":
            self.format = apply_sgr(self.format, params)
            return None
        if final == "K":
            mode = int(params) if params.isdigit() else 0
            return EraseLine(mode) if mode in (0, 1, 2) else None
        if final == "G" and (not params or params in ("0", "1")):
            return _CR
        return None
