"""The Output console: an execution's stdout, stderr and mldesk's own messages.

:meth:`Console.append` only decodes and buffers.  A timer renders the buffer in
batches, each inside one ``QTextCursor`` edit block, and gives the event loop
back after about :data:`SLICE_BUDGET_S` of work, so a flood of output (or one
enormous line) never freezes the window.

Rendering keeps the current, unfinished line as a small Python model (a list of
``[text, key]`` segments): carriage returns, backspaces and erase-line sequences
edit that model, and only the changed tail of the line is written to the
document.  A tqdm bar updated a hundred times in one batch therefore costs one
small document edit, and complete lines go in as one ``insertText`` per run of
equally formatted text.  Lines longer than :data:`MAX_LINE_CHARS` are broken
into several blocks so the text layout never has to handle a megabyte line.

(Why one long module: buffering, the line model, the document writes and the
trimming share one invariant -- what the document holds equals the line model's
synced part plus the queued runs -- so they stay in one class; the bars around the
text live in :mod:`mldesk.ui.consolebars`.)

The scrollback is capped (``max_lines``).  With ``keep_head`` (the window sets
1,000 while it follows an execution), trimming keeps the first ``keep_head``
lines and cuts the middle instead, behind one "⋯ N lines not shown ⋯" block
and the bar with **Show all** / **Save log as…** (SPEC 5).  Buffered output holding more than
``max_lines`` complete lines (a long pause, a flood faster than the screen)
is cut to its last ``max_lines`` lines before it is drawn: the rest would be
trimmed the moment it appeared.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from time import perf_counter

from mldesk.ui.ansi import DEFAULT_FORMAT, RGB, SGR_RE, AnsiParser, Backspace, CarriageReturn
from mldesk.ui.ansi import EraseLine, Format, Newline, Text, apply_sgr, xterm_rgb
from mldesk.ui.findbar import FindBar, find_wrapping
from mldesk.ui.consolebars import SkipBar as _SkipBar
from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, Signal, monospace_font

STDOUT, STDERR, MLDESK = 1, 2, 3
_BANNER = 0  # queue entry kind for a skip banner
_BANNER_STATE = 7  # QTextBlock.userState() of the "lines not shown" block

#: Work done per timer tick before yielding to the event loop.
SLICE_BUDGET_S = 0.012
#: Characters parsed and written per step inside a slice.
CHUNK_CHARS = 8_192
#: Longer lines are continued in a new block.
MAX_LINE_CHARS = 4_096
#: Compact the document's text buffer after trimming this many characters.
COMPACT_AFTER_CHARS = 4_000_000
#: Most find matches highlighted at once.
MAX_HIGHLIGHTS = 1_000
#: Prefix of each line mldesk itself writes (stage messages).
MLDESK_MARKER = "\u25b8 "

# Python tracebacks (on stderr): the header, each frame's file:line (a link), the exception line.
_TB_FILE = re.compile(r'File "([^"\n]+)", line (\d+)')
_TB_HEAD = re.compile(r"^Traceback \(most recent call last\):$", re.M)
_TB_EXC = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit|Warning)\b.*$", re.M)
_LINK_SCHEME = "mldesk-src:"
_LINK_COLOR = ("#1f5fbf", "#8cbcff")

# What the fast path cannot take: controls other than \t, \n and SGR sequences.
_NOT_SIMPLE = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]|\x1b(?!\[[0-9;:]*m)")

# The 16 ANSI colours, tuned for legibility on a light and on a dark background.
_ANSI_LIGHT: tuple[RGB, ...] = (
    (0x00, 0x00, 0x00), (0xC5, 0x1E, 0x14), (0x1D, 0x8A, 0x2E), (0x9A, 0x6A, 0x00),
    (0x1E, 0x5B, 0xC6), (0xA3, 0x2B, 0xB0), (0x08, 0x84, 0x9C), (0x6E, 0x6E, 0x6E),
    (0x5E, 0x5E, 0x5E), (0xE0, 0x3C, 0x31), (0x2D, 0xA4, 0x44), (0xB7, 0x8B, 0x00),
    (0x3B, 0x78, 0xE7), (0xC2, 0x4B, 0xD1), (0x0F, 0xA5, 0xC2), (0x9A, 0x9A, 0x9A),
)
_ANSI_DARK: tuple[RGB, ...] = (
    (0x80, 0x80, 0x80), (0xF1, 0x4C, 0x4C), (0x23, 0xD1, 0x8B), (0xE5, 0xC0, 0x7B),
    (0x4F, 0x9C, 0xF0), (0xD6, 0x70, 0xD6), (0x29, 0xB8, 0xDB), (0xCC, 0xCC, 0xCC),
    (0x9A, 0x9A, 0x9A), (0xFF, 0x6E, 0x6E), (0x5A, 0xF7, 0x8E), (0xF5, 0xF5, 0x43),
    (0x7A, 0xB6, 0xFF), (0xE8, 0x8E, 0xE8), (0x5F, 0xD7, 0xEE), (0xFF, 0xFF, 0xFF),
)

# One colour scheme per background lightness: (light, dark).
# stderr is distinct but not alarming: tqdm and logging write there (not only errors)
_STDERR_COLOR = ("#7a5b2e", "#d9b98c")
_MLDESK_COLOR = ("#4a6a94", "#8fa9c9")
_BANNER_FG = ("#5f6b7a", "#9aa7b8")
_BANNER_BG = ("#eef2f7", "#262c36")
_BAR_BG = ("#fff6dc", "#3a3424")
_BAR_BORDER = ("#e6d39e", "#5c5130")
_FIND_CURRENT = ("#ff9632", "#b8661f")
_FIND_OTHER = ("#fff176", "#6b5f12")

Key = tuple[int, Format]  # (stream, ANSI format): what a run of text looks like


def _cut(segs: list[list], start: int, end: int) -> list[list]:
    """The part of a segment list between columns ``start`` and ``end``."""
    out: list[list] = []
    pos = 0
    for text, key in segs:
        nxt = pos + len(text)
        if nxt > start and pos < end:
            out.append([text[max(start - pos, 0) : end - pos], key])
        pos = nxt
        if pos >= end:
            break
    return out


def _merged(segs: list[list]) -> list[list]:
    out: list[list] = []
    for seg in segs:
        if not seg[0]:
            continue
        if out and out[-1][1] == seg[1]:
            out[-1][0] += seg[0]
        else:
            out.append(seg)
    return out


def _utf16_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


class Console(QtWidgets.QWidget):
    """Read-only, batched, ANSI-aware view of one execution's output.

    Streams: :data:`STDOUT` (1), :data:`STDERR` (2), :data:`MLDESK` (3).  Must be
    used from the GUI thread (connect the engine's signals to :meth:`append`).
    """

    showAllRequested = Signal()
    saveLogRequested = Signal()
    #: Emitted after each batch was written to the view.
    flushed = Signal()
    pausedChanged = Signal(bool)
    followingChanged = Signal(bool)
    #: a traceback's file:line link was clicked: (path as printed, line number)
    sourceRequested = Signal(str, int)

    def __init__(
        self,
        parent: QtWidgets.QWidget | None = None,
        *,
        max_lines: int = 100_000,
        flush_interval_ms: int = 100,
        keep_head: int = 0,
    ) -> None:
        super().__init__(parent)
        self._ready = False
        self._keep_head = keep_head
        self._banner_no: int | None = None  # block number of the "lines not shown" block
        self._skipped = 0  # lines that block stands for
        self._dropped = 0  # lines dropped unseen in a flood (they join the banner's count)
        self.setObjectName("console")
        self._max_lines = max_lines
        self._flush_interval_ms = flush_interval_ms

        # buffered input: deque of [kind, parts, offset]
        self._pending: deque[list] = deque()
        self._pending_chars = 0
        self._view_stale = False
        self._decoders = {s: self._new_decoder() for s in (STDOUT, STDERR, MLDESK)}
        self._parsers = {s: AnsiParser() for s in (STDOUT, STDERR, MLDESK)}
        self._mldesk_at_line_start = True
        self._paused = False
        self._following = True
        self._autoscrolling = False

        # the unfinished last line, see the module docstring
        self._line: list[list] = []
        self._line_len = 0  # characters in the line model
        self._col = 0  # where the next text goes
        self._synced = 0  # line[:synced] is in the document, unchanged
        self._doc_line_len = 0  # characters of this line in the document
        self._trunc: int | None = None  # cut the document's last block here (UTF-16)
        self._out: list[list] = []  # runs [key, parts] to append to the document
        self._out_lines = 0
        self._last_stream = STDOUT
        self._lines_rendered = 0
        self._trim_cost = 2e-6  # seconds per block removed by _trim(), learnt
        self._trimmed_chars = 0
        self._formats: dict[Key, QtGui.QTextCharFormat] = {}
        self._find_text = ""

        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)

        self._backlog_check = self._initial_backlog_check()
        self._build()
        self._apply_palette()
        self._ready = True

    # ----------------------------------------------------------------- building
    def _build(self) -> None:
        text = self._text = QtWidgets.QPlainTextEdit(self)
        text.setObjectName("consoleText")
        text.setReadOnly(True)
        text.setUndoRedoEnabled(False)
        text.setFrameShape(QtWidgets.QFrame.NoFrame)
        text.setLineWrapMode(QtWidgets.QPlainTextEdit.WidgetWidth)
        text.setWordWrapMode(QtGui.QTextOption.WrapAtWordBoundaryOrAnywhere)
        # The cap is kept by _trim() before each batch ends; the document's own
        # trimming (a safety net here) lays out every block it removes, ~10x slower.
        text.setMaximumBlockCount(self._max_lines)
        text.setFont(monospace_font())
        text.setTabStopDistance(8 * text.fontMetrics().horizontalAdvance(" "))
        text.document().setDocumentMargin(6)
        text.setContextMenuPolicy(Qt.CustomContextMenu)
        text.customContextMenuRequested.connect(self._show_context_menu)
        text.viewport().setMouseTracking(True)
        text.viewport().installEventFilter(self)
        self._cursor = QtGui.QTextCursor(text.document())
        bar = text.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

        self._toolbar = QtWidgets.QToolBar(self)
        self._toolbar.setObjectName("consoleToolBar")
        self._toolbar.setIconSize(QtCore.QSize(16, 16))
        self._toolbar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self._toolbar.setMovable(False)
        def action(name, label, tip, icon, slot, *, checkable=False, shortcut=None):
            # theme icons where the platform has them (Qt maps them to native
            # icon sets); plain text buttons read better than mismatched fallbacks
            act = QtGui.QAction(QtGui.QIcon.fromTheme(icon), label, self)
            act.setObjectName(name)
            act.setToolTip(tip)
            act.setCheckable(checkable)
            if shortcut is not None:
                act.setShortcut(shortcut)
                act.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            (act.toggled if checkable else act.triggered).connect(slot)
            self.addAction(act)
            return act

        ThemeIcon = QtGui.QIcon.ThemeIcon
        self.pause_action = action(
            "consolePause", "Pause", "Pause output (it is kept, and shown on resume)",
            ThemeIcon.MediaPlaybackPause, self.set_paused, checkable=True,
        )
        self.follow_action = action(
            "consoleFollow", "Follow", "Follow the end of the output (off: scroll lock)",
            ThemeIcon.GoDown, self.set_following, checkable=True,
        )
        self.follow_action.setChecked(True)
        self.find_action = action(
            "consoleFind", "Find", "Find in output (Ctrl+F)", ThemeIcon.EditFind,
            self.open_find, shortcut=QtGui.QKeySequence.Find,
        )
        self.copy_action = action(
            "consoleCopy", "Copy", "Copy the selection (Ctrl+C)", ThemeIcon.EditCopy, text.copy
        )
        self.copy_action.setEnabled(False)
        text.copyAvailable.connect(self.copy_action.setEnabled)
        self.clear_action = action(
            "consoleClear", "Clear", "Clear the view", ThemeIcon.EditClear, self.clear_view
        )
        self._close_find_action = action(
            "consoleCloseFind", "Close find", "", ThemeIcon.WindowClose, self.close_find,
            shortcut=QtGui.QKeySequence(Qt.Key_Escape),
        )
        self.show_all_action = action(
            "consoleShowAllAction", "Show all", "Load the whole log, also the lines not shown",
            ThemeIcon.ViewRestore, lambda _c=False: self.showAllRequested.emit(),
        )
        self.save_log_action = action(
            "consoleSaveLogAction", "Save log\u2026", "Save the whole log to a file (plain text, or as written)",
            ThemeIcon.DocumentSaveAs, lambda _c=False: self.saveLogRequested.emit(),
        )
        for act in (self.pause_action, self.follow_action, None, self.find_action,
                    self.copy_action, self.clear_action, None, self.show_all_action, self.save_log_action):
            if act is None:
                self._toolbar.addSeparator()
            else:
                self._toolbar.addAction(act)
        spacer = QtWidgets.QWidget(self._toolbar)
        spacer.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Preferred)
        self._toolbar.addWidget(spacer)
        self._status = QtWidgets.QLabel(self._toolbar)
        self._status.setObjectName("consoleStatus")
        self._status.setContentsMargins(0, 0, 8, 0)
        self._toolbar.addWidget(self._status)

        self._skip_bar = _SkipBar(self)
        self._skip_bar.hide()
        self._skip_bar.show_all.clicked.connect(self.showAllRequested)
        self._skip_bar.save_log.clicked.connect(self.saveLogRequested)

        self._find_bar = FindBar(self, name="console", placeholder="Find in output", field_width=220,
                                 count_width=90)
        self._find_bar.hide()
        self._find_bar.search.connect(self._on_find_requested)
        self._find_bar.closed.connect(self.close_find)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._toolbar)
        layout.addWidget(self._skip_bar)
        layout.addWidget(text, 1)
        layout.addWidget(self._find_bar)

    def _new_decoder(self) -> codecs.IncrementalDecoder:
        return codecs.getincrementaldecoder("utf-8")(errors="replace")

    # ------------------------------------------------------------------ palette
    def _pick(self, pair: tuple[str, str]) -> QtGui.QColor:
        return QtGui.QColor(pair[self._dark])

    def _apply_palette(self) -> None:
        base = self._text.palette().color(QtGui.QPalette.Base)
        self._dark = int(base.lightness() < 128)
        self._ansi = _ANSI_DARK if self._dark else _ANSI_LIGHT
        self._formats.clear()
        fmt = QtGui.QTextCharFormat()
        fmt.setForeground(self._pick(_BANNER_FG))
        fmt.setFontItalic(True)
        self._banner_char_format = fmt
        block = QtGui.QTextBlockFormat()
        block.setBackground(self._pick(_BANNER_BG))
        block.setAlignment(Qt.AlignHCenter)
        block.setTopMargin(2)
        block.setBottomMargin(2)
        self._banner_block_format = block
        bg, border = self._pick(_BAR_BG).name(), self._pick(_BAR_BORDER).name()
        self._skip_bar.setStyleSheet(
            f"#consoleSkipBar {{ background: {bg}; border-bottom: 1px solid {border}; }}"
        )
        sep = self.palette().color(QtGui.QPalette.Mid).name()
        self._toolbar.setStyleSheet(
            f"#consoleToolBar {{ border: none; border-bottom: 1px solid {sep}; spacing: 2px; }}"
        )
        self._find_bar.setStyleSheet(f"#consoleFindBar {{ border-top: 1px solid {sep}; }}")
        if self._find_text:
            self._highlight_all(self._find_text)

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and self._ready:
            self._apply_palette()

    def _char_format(self, key: Key) -> QtGui.QTextCharFormat:
        fmt = self._formats.get(key)
        if fmt is not None:
            return fmt
        if len(self._formats) > 4096:  # e.g. true-colour gradients
            self._formats.clear()
        stream, ansi = key
        fmt = QtGui.QTextCharFormat()
        fg: QtGui.QColor | None = None
        bg: QtGui.QColor | None = None
        if stream == STDERR:
            fg = self._pick(_STDERR_COLOR)
        elif stream == MLDESK:
            fg = self._pick(_MLDESK_COLOR)
            fmt.setFontItalic(True)
        if ansi.fg is not None:
            fg = QtGui.QColor(*xterm_rgb(ansi.fg, self._ansi))
        if ansi.bg is not None:
            bg = QtGui.QColor(*xterm_rgb(ansi.bg, self._ansi))
        if ansi.inverse:
            pal = self._text.palette()
            fg, bg = (bg or pal.color(QtGui.QPalette.Base)), (fg or pal.color(QtGui.QPalette.Text))
        if ansi.dim:
            fg = QtGui.QColor(fg or self._text.palette().color(QtGui.QPalette.Text))
            fg.setAlphaF(0.6)
        if fg is not None:
            fmt.setForeground(fg)
        if bg is not None:
            fmt.setBackground(bg)
        if ansi.bold:
            fmt.setFontWeight(QtGui.QFont.Bold)
        if ansi.italic:
            fmt.setFontItalic(True)
        if ansi.underline:
            fmt.setFontUnderline(True)
        if ansi.strike:
            fmt.setFontStrikeOut(True)
        self._formats[key] = fmt
        return fmt

    # --------------------------------------------------------------- public API
    def append(self, stream: int, data: bytes) -> None:
        """Buffer ``data`` from ``stream`` (1 stdout, 2 stderr, 3 mldesk).

        Cheap: decodes (incrementally, so a UTF-8 character split between two
        calls comes out whole) and queues; the timer renders.
        """
        text = self._decoders[stream].decode(data)
        if stream == MLDESK and text:
            text = self._mark_mldesk(text)
        if text:
            self._enqueue(stream, text)

    def add_skip_banner(self, n_skipped: int) -> None:
        """Mark the lines left out of a large log (call it between the first and
        the last lines): an inline "⋯ N lines not shown ⋯" block, and the bar
        with **Show all** / **Save log as…** above the text."""
        self._enqueue(_BANNER, n_skipped)
        self._skip_bar.label.setText(
            f"This log is long: {n_skipped:,} lines in the middle are not shown."
        )
        self._skip_bar.show()

    def hide_skip_bar(self) -> None:
        self._skip_bar.hide()

    def clear_view(self) -> None:
        """Remove all text, buffered output and the skip bar; the streams' decoders
        and colour state carry on (use :meth:`reset` for a different log)."""
        self._timer.stop()
        self._pending.clear()
        self._pending_chars = 0
        self._backlog_check = self._initial_backlog_check()
        self._clear_document()
        self._lines_rendered = 0
        self._skip_bar.hide()
        if self._find_text:
            self._highlight_all(self._find_text)
        self._update_status()

    def _clear_document(self) -> None:
        self._text.clear()
        self._banner_no = None
        self._skipped = 0
        self._dropped = 0
        self._cursor = QtGui.QTextCursor(self._text.document())
        self._line, self._out, self._trunc = [], [], None
        self._line_len = self._col = self._synced = self._doc_line_len = self._out_lines = 0
        self._view_stale = False

    def reset(self) -> None:
        """:meth:`clear_view` plus fresh decoders and ANSI state, not paused,
        following: ready for another log."""
        self.clear_view()
        self.set_paused(False)
        self._decoders = {s: self._new_decoder() for s in self._decoders}
        for parser in self._parsers.values():
            parser.reset()
        self._mldesk_at_line_start = True
        self.set_following(True)

    def flush_now(self) -> None:
        """Render everything buffered right away (nothing while paused)."""
        self._timer.stop()
        if not self._paused:
            self._render(None)

    def set_paused(self, paused: bool) -> None:
        """While paused, output is buffered but not shown; resuming shows it all."""
        if paused == self._paused:
            return
        self._paused = paused
        self.pause_action.setChecked(paused)
        self.pause_action.setText("Resume" if paused else "Pause")
        self.pause_action.setIcon(QtGui.QIcon.fromTheme(
            QtGui.QIcon.ThemeIcon.MediaPlaybackStart if paused
            else QtGui.QIcon.ThemeIcon.MediaPlaybackPause))
        self._update_status()
        if not paused and self._pending:
            self._timer.start(0)
        self.pausedChanged.emit(paused)

    def is_paused(self) -> bool:
        return self._paused

    def set_following(self, following: bool) -> None:
        """Follow the end of the output; ``False`` locks the scroll position."""
        if following:
            self._scroll_to_end()
        if following != self._following:
            self._following = following
            self.follow_action.setChecked(following)
            self.followingChanged.emit(following)

    def is_following(self) -> bool:
        return self._following

    def open_find(self) -> None:
        """Show the find bar (Ctrl+F) with the selection, if any, as the query."""
        self._find_bar.open_with(self._text.textCursor().selectedText())
        self._close_find_action.setEnabled(True)

    def close_find(self) -> None:
        self._find_bar.hide()
        self._close_find_action.setEnabled(False)
        self._find_text = ""
        self._text.setExtraSelections([])
        self._text.setFocus()

    def find(self, text: str, *, backward: bool = False) -> bool:
        """Select the next (or previous) match of ``text``, wrapping around, and
        highlight all matches.  Case-insensitive.  True if there is a match."""
        if text != self._find_text:
            self._find_text = text
        if not text:
            self._text.setExtraSelections([])
            self._find_bar.count.setText("")
            return False
        match = find_wrapping(self._text.document(), text, self._text.textCursor(), backward)
        if not match.isNull():
            self._text.setTextCursor(match)
            self._text.ensureCursorVisible()
        self._highlight_all(text)
        return not match.isNull()

    def text_edit(self) -> QtWidgets.QPlainTextEdit:
        return self._text

    def plain_text(self) -> str:
        return self._text.toPlainText()

    def line_count(self) -> int:
        """Lines in the view now (a trailing empty line does not count)."""
        doc = self._text.document()
        return doc.blockCount() - (doc.lastBlock().length() <= 1)

    def lines_rendered(self) -> int:
        """Lines completed since the last clear, including those scrolled out of
        the capped scrollback."""
        return self._lines_rendered

    def pending_chars(self) -> int:
        """Characters buffered and not yet rendered."""
        return self._pending_chars

    def max_lines(self) -> int:
        return self._max_lines

    def set_max_lines(self, max_lines: int) -> None:
        """Cap the scrollback (oldest lines go first)."""
        self._max_lines = max(1, max_lines)
        self._backlog_check = self._initial_backlog_check()
        self._trim()
        self._text.setMaximumBlockCount(self._max_lines)

    # ---------------------------------------------------------------- buffering
    def _mark_mldesk(self, text: str) -> str:
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if line and (i or self._mldesk_at_line_start):
                lines[i] = MLDESK_MARKER + line
        self._mldesk_at_line_start = text.endswith("\n")
        return "\n".join(lines)

    def _enqueue(self, kind: int, payload: str | int) -> None:
        tail = self._pending[-1] if self._pending else None
        if kind == _BANNER:
            self._pending.append([kind, payload, 0])
        elif tail is not None and tail[0] == kind and tail[2] == 0:
            tail[1].append(payload)
            self._pending_chars += len(payload)
        else:
            self._pending.append([kind, [payload], 0])
            self._pending_chars += len(payload)
        if self._pending_chars > self._backlog_check and (self._paused or self._head_filled()):
            self._drop_backlog()
        if not self._timer.isActive():
            self._timer.start(self._flush_interval_ms)

    def _initial_backlog_check(self) -> int:
        # below this many buffered characters, just render them
        return max(self._max_lines * 40, 1 << 20)

    def _drop_backlog(self) -> None:
        """Forget buffered output older than the last ``max_lines`` lines: it
        would leave the capped scrollback as soon as it was shown.  Keeps a
        paused console's memory bounded and lets a flood catch up."""
        entries, keep, count = self._pending, self._max_lines, 0
        for i in range(len(entries) - 1, -1, -1):
            kind, parts, offset = entries[i]
            if kind == _BANNER:
                continue
            if len(parts) > 1:
                parts[:] = ["".join(parts)]
            text = parts[0]
            n = text.count("\n", offset)
            if count + n <= keep:
                count += n
                continue
            pos = len(text)
            for _ in range(keep - count + 1):
                pos = text.rfind("\n", offset, pos)
            for _ in range(i):
                old = entries.popleft()
                if old[0] != _BANNER:
                    self._forget(old[0], "".join(old[1])[old[2] :])
            self._forget(kind, text[offset : pos + 1])
            entries[0][2] = pos + 1
            if self._keep_head and self._head_filled():
                # the first lines stay: the dropped ones join the banner, the rest starts a line
                self._newline()
                self._dropped -= 1
            else:
                self._view_stale = True  # what is on screen would be trimmed too
            self._backlog_check = max(2 * self._pending_chars, self._initial_backlog_check())
            self._update_status()
            return
        self._backlog_check = 2 * self._pending_chars  # not enough lines yet

    def _forget(self, stream: int, text: str) -> None:
        """Account for dropped output as if it had been shown and scrolled away."""
        self._pending_chars -= len(text)
        self._lines_rendered += text.count("\n")
        self._dropped += text.count("\n")
        self._parsers[stream].skip(text)  # keep the stream's colour state
        self._last_stream = stream

    def _on_timer(self) -> None:
        if self._paused:
            self._update_status()
            return
        if not self._render(SLICE_BUDGET_S):
            self._timer.start(0)  # more to do: continue after pending events

    # ---------------------------------------------------------------- rendering
    def _render(self, budget: float | None) -> bool:
        """Render buffered output for up to ``budget`` seconds (None: all of it).
        Returns True when nothing is left."""
        if not self._pending:
            return True
        deadline = None if budget is None else perf_counter() + budget
        if self._view_stale:
            self._clear_document()
        doc = self._text.document()
        self._autoscrolling = True
        self._cursor.beginEditBlock()
        try:
            while self._pending:
                entry = self._pending[0]
                kind = entry[0]
                if kind == _BANNER:
                    self._pending.popleft()
                    self._insert_banner(entry[1])
                else:
                    parts = entry[1]
                    if len(parts) > 1:
                        parts[:] = ["".join(parts)]
                    text, offset = parts[0], entry[2]
                    if deadline is None or len(text) - offset <= CHUNK_CHARS:
                        chunk = text[offset:] if offset else text
                        self._pending.popleft()
                    else:
                        chunk = text[offset : offset + CHUNK_CHARS]
                        entry[2] = offset + CHUNK_CHARS
                    self._pending_chars -= len(chunk)
                    self._process(kind, chunk)
                    self._sync()
                if deadline is not None:
                    # leave time for trimming the scrollback after the batch
                    excess = doc.blockCount() - self._max_lines
                    if perf_counter() + max(excess, 0) * self._trim_cost >= deadline:
                        break
        finally:
            self._trim()
            self._cursor.endEditBlock()
            self._autoscrolling = False
        if not self._pending:
            self._backlog_check = self._initial_backlog_check()
        if self._following:
            self._scroll_to_end()
        self._update_status()
        self.flushed.emit()
        return not self._pending

    def _process(self, stream: int, chunk: str) -> None:
        if stream == MLDESK and self._last_stream != MLDESK and self._line_len:
            self._newline()  # stage messages start on their own line
        self._last_stream = stream
        parser = self._parsers[stream]
        first = chunk.find("\n")
        last = chunk.rfind("\n")
        if first == last or parser.has_pending or _NOT_SIMPLE.search(chunk):
            self._feed(stream, parser, chunk)
            return
        # Complete lines with nothing but text, tabs and colours: the line in
        # progress is finished through the line model, the lines after it go
        # straight into runs, and the last, unfinished one into the model again.
        self._feed(stream, parser, chunk[: first + 1])
        middle = chunk[first + 1 : last + 1]
        if max(map(len, middle.split("\n"))) > MAX_LINE_CHARS:
            self._feed(stream, parser, middle)
        else:
            self._add_colored(stream, parser, middle)
        if last + 1 < len(chunk):
            self._feed(stream, parser, chunk[last + 1 :])

    def _add_colored(self, stream: int, parser: AnsiParser, lines: str) -> None:
        """Queue complete ``lines`` whose only escapes are SGR sequences."""
        parts = SGR_RE.split(lines)  # text, params, text, params, ..., text
        fmt = parser.format
        out = self._out
        last = out[-1] if out else None
        for i, part in enumerate(parts):
            if i % 2:
                fmt = apply_sgr(fmt, part)
            elif part:
                key = (stream, fmt)
                if last is not None and last[0] == key:
                    last[1].append(part)
                else:
                    last = [key, [part]]
                    out.append(last)
        parser.format = fmt
        n = lines.count("\n")
        self._out_lines += n
        self._lines_rendered += n

    def _feed(self, stream: int, parser: AnsiParser, text: str) -> None:
        """The general path: every action through the line model."""
        put, newline = self._put, self._newline
        for action in parser.feed(text):
            kind = type(action)
            if kind is Text:
                put(action.text, (stream, action.fmt))
            elif kind is Newline:
                newline()
            elif kind is CarriageReturn:
                self._col = 0
            elif kind is Backspace:
                self._col = max(self._col - 1, 0)
            elif kind is EraseLine:
                self._erase(action.mode, stream)

    def _put(self, text: str, key: Key) -> None:
        """Write ``text`` at the cursor column, continuing over-long lines."""
        while text:
            room = MAX_LINE_CHARS - self._col
            if room <= 0:
                self._newline()
                room = MAX_LINE_CHARS
            piece, text = (text, "") if len(text) <= room else (text[:room], text[room:])
            self._write(piece, key)

    def _write(self, text: str, key: Key) -> None:
        col, n = self._col, len(text)
        if col > self._line_len:  # after an erase: fill the gap
            self._line.append([" " * (col - self._line_len), (key[0], DEFAULT_FORMAT)])
            self._line_len = col
        if col == self._line_len:
            segs = self._line
            if segs and segs[-1][1] == key:
                segs[-1][0] += text
            else:
                segs.append([text, key])
            self._line_len += n
        else:  # overwrite part of the line (after \r or \b)
            end = col + n
            self._synced = min(self._synced, col)
            self._line = _merged(
                _cut(self._line, 0, col) + [[text, key]] + _cut(self._line, end, self._line_len)
            )
            self._line_len = max(self._line_len, end)
        self._col = col + n

    def _erase(self, mode: int, stream: int) -> None:
        col = self._col
        if mode == 0:
            keep = min(col, self._line_len)
            self._line = _cut(self._line, 0, keep)
            self._line_len = keep
            self._synced = min(self._synced, keep)
        elif mode == 1:
            saved = self._col
            self._col = 0
            self._write(" " * min(col, self._line_len), (stream, DEFAULT_FORMAT))
            self._col = saved
        else:
            self._line, self._line_len, self._synced = [], 0, 0

    def _newline(self) -> None:
        self._emit_line_tail()
        self._add_run("\n", None)
        self._line = []
        self._line_len = self._col = self._synced = self._doc_line_len = 0
        self._out_lines += 1
        self._lines_rendered += 1

    def _add_run(self, text: str, key: Key | None) -> None:
        """Queue ``text`` for the document; key None: same look as what precedes."""
        out = self._out
        if out and (key is None or out[-1][0] == key):
            out[-1][1].append(text)
        else:
            out.append([key or (self._last_stream, DEFAULT_FORMAT), [text]])

    def _emit_line_tail(self) -> None:
        """Queue the part of the current line the document does not have yet."""
        if self._synced < self._doc_line_len:
            # only the document's last block can be stale, and only before any
            # run was queued after it
            self._trunc = _utf16_len("".join(t for t, _ in _cut(self._line, 0, self._synced)))
        if self._synced < self._line_len:
            segs = _cut(self._line, self._synced, self._line_len) if self._synced else self._line
            for text, key in segs:
                self._add_run(text, key)
        self._synced = self._doc_line_len = self._line_len

    def _sync(self) -> None:
        """Write the queued runs and the current line's new tail to the document."""
        self._emit_line_tail()
        if self._trunc is None and not self._out:
            return
        cursor = self._cursor
        if self._trunc is not None:
            cursor.setPosition(self._text.document().lastBlock().position() + self._trunc)
            cursor.movePosition(QtGui.QTextCursor.End, QtGui.QTextCursor.KeepAnchor)
            cursor.removeSelectedText()
            self._trunc = None
        else:
            cursor.movePosition(QtGui.QTextCursor.End)
        runs, self._out = self._out, []
        if self._out_lines > self._max_lines and self._head_filled():
            runs = self._keep_last_lines(runs, self._max_lines)
        self._out_lines = 0
        for key, parts in runs:
            text = "".join(parts)
            if key[0] == STDERR and ('File "' in text or "Traceback" in text):
                start = cursor.position()
                cursor.insertText(text, self._char_format(key))
                self._mark_traceback(start, text)
            else:
                cursor.insertText(text, self._char_format(key))

    def _mark_traceback(self, start: int, text: str) -> None:
        """Make a traceback in ``text`` (just inserted at ``start``) stand out: its header
        and exception line bold, each ``File "x.py", line N`` a link (see :meth:`link_at`)."""
        cursor = QtGui.QTextCursor(self._text.document())

        def apply(i: int, j: int, fmt: QtGui.QTextCharFormat) -> None:
            a = start + _utf16_len(text[:i])
            cursor.setPosition(a)
            cursor.setPosition(a + _utf16_len(text[i:j]), QtGui.QTextCursor.KeepAnchor)
            cursor.mergeCharFormat(fmt)

        bold = QtGui.QTextCharFormat()
        bold.setFontWeight(QtGui.QFont.Bold)
        for m in _TB_HEAD.finditer(text):
            apply(m.start(), m.end(), bold)
        for m in _TB_EXC.finditer(text):
            apply(m.start(), m.end(), bold)
        for m in _TB_FILE.finditer(text):
            link = QtGui.QTextCharFormat()
            link.setAnchor(True)
            link.setAnchorHref(f"{_LINK_SCHEME}{m.group(2)}:{m.group(1)}")
            link.setFontUnderline(True)
            link.setForeground(self._pick(_LINK_COLOR))
            apply(m.start(), m.end(), link)

    def link_at(self, pos: QtCore.QPoint) -> tuple[str, int] | None:
        """(path, line) of the traceback link at viewport position ``pos``, else None."""
        cursor = self._text.cursorForPosition(pos)
        for c in (cursor, QtGui.QTextCursor(cursor)):
            if c is not cursor:
                c.movePosition(QtGui.QTextCursor.NextCharacter)
            href = c.charFormat().anchorHref()
            if href.startswith(_LINK_SCHEME):
                line, _, path = href[len(_LINK_SCHEME):].partition(":")
                return path, int(line)
        return None

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if obj is self._text.viewport():
            kind = event.type()
            if kind == QtCore.QEvent.MouseMove:
                link = self.link_at(event.position().toPoint())
                obj.setCursor(Qt.PointingHandCursor if link else Qt.IBeamCursor)
            elif kind == QtCore.QEvent.MouseButtonRelease and event.button() == Qt.LeftButton \
                    and not self._text.textCursor().hasSelection():
                link = self.link_at(event.position().toPoint())
                if link is not None:
                    self.sourceRequested.emit(*link)
                    return True
        return super().eventFilter(obj, event)

    def _head_filled(self) -> bool:
        """True unless the first ``keep_head`` lines are still to come (then nothing
        may be dropped unseen: those lines stay)."""
        return not self._keep_head or self._text.document().blockCount() > self._keep_head

    def set_keep_head(self, lines: int) -> None:
        """Keep the first ``lines`` lines when the scrollback cap is reached (0: keep the last only)."""
        self._keep_head = max(0, int(lines))

    def skipped_lines(self) -> int:
        """Lines the "lines not shown" block stands for (0: none)."""
        return self._skipped if self._banner_no is not None else 0

    def _banner_block(self) -> QtGui.QTextBlock | None:
        if self._banner_no is None:
            return None
        block = self._text.document().findBlockByNumber(self._banner_no)
        if block.isValid() and block.userState() == _BANNER_STATE:
            return block
        self._banner_no = None
        return None

    def _set_banner_text(self, block: QtGui.QTextBlock, n_skipped: int) -> None:
        self._skipped = n_skipped
        cursor = QtGui.QTextCursor(block)
        cursor.movePosition(QtGui.QTextCursor.EndOfBlock, QtGui.QTextCursor.KeepAnchor)
        cursor.insertText(f"\u22ef  {n_skipped:,} lines not shown  \u22ef", self._banner_char_format)
        self._skip_bar.label.setText(f"{n_skipped:,} lines in the middle are not shown.")
        self._skip_bar.show()

    def _trim(self) -> None:
        """Drop blocks beyond the scrollback cap: the middle ones (behind the banner)
        when the first ``keep_head`` lines are kept, else the oldest."""
        doc = self._text.document()
        excess = doc.blockCount() - self._max_lines
        if excess <= 0:
            return
        start = perf_counter()
        cursor = self._cursor
        head = self._keep_head
        banner = self._banner_block()
        if banner is None and head and doc.blockCount() > head + excess + 2:
            # the banner goes where line head+1 is now, in a block of its own
            cursor.setPosition(doc.findBlockByNumber(head).position())
            cursor.insertBlock(QtGui.QTextBlockFormat(), QtGui.QTextCharFormat())
            cursor.movePosition(QtGui.QTextCursor.PreviousBlock)
            cursor.setBlockFormat(self._banner_block_format)
            banner = cursor.block()
            banner.setUserState(_BANNER_STATE)
            self._banner_no = banner.blockNumber()
            self._skipped = 0
            excess += 1
        if banner is not None and doc.blockCount() > banner.blockNumber() + excess + 2:
            first = banner.next()
            cursor.setPosition(first.position())
            cursor.setPosition(doc.findBlockByNumber(first.blockNumber() + excess).position(),
                               QtGui.QTextCursor.KeepAnchor)
            self._trimmed_chars += cursor.selectionEnd() - cursor.selectionStart()
            cursor.removeSelectedText()
            self._set_banner_text(self._banner_block(), self._skipped + excess + self._dropped)
            self._dropped = 0
            cursor.movePosition(QtGui.QTextCursor.End)
        else:
            cursor.setPosition(0)
            cursor.setPosition(doc.findBlockByNumber(excess).position(), QtGui.QTextCursor.KeepAnchor)
            self._trimmed_chars += cursor.selectionEnd()
            cursor.removeSelectedText()
            if self._banner_no is not None:
                self._banner_no -= excess
                if self._banner_no < 0:
                    self._banner_no = None
        if excess >= 1000:  # learn what a removed block costs here
            self._trim_cost = (self._trim_cost + (perf_counter() - start) / excess) / 2
        if self._trimmed_chars > COMPACT_AFTER_CHARS:
            # Without undo, removed text stays in the document's buffer until
            # it is compacted, which only setUndoRedoEnabled(False) triggers.
            self._trimmed_chars = 0
            doc.setUndoRedoEnabled(False)

    def _keep_last_lines(self, runs: list[list], n: int) -> list[list]:
        """Drop all but the last ``n`` lines of ``runs``: they would be trimmed
        from the scrollback right away, so do not lay them out at all."""
        count = 0
        for i in range(len(runs) - 1, -1, -1):
            key, parts = runs[i]
            text = "".join(parts)
            c = text.count("\n")
            if count + c > n:
                pos = len(text)
                for _ in range(n - count + 1):
                    pos = text.rfind("\n", 0, pos)
                self._dropped += text.count("\n", 0, pos) + sum(
                    "".join(p).count("\n") for _k, p in runs[:i])
                # a newline ends the (stale) last line already in the document
                return [[key, ["\n"]], [key, [text[pos + 1 :]]], *runs[i + 1 :]]
            count += c
        return runs

    def _insert_banner(self, n_skipped: int) -> None:
        if self._line_len or self._doc_line_len:
            self._newline()
        self._sync()
        cursor = self._cursor
        cursor.movePosition(QtGui.QTextCursor.End)
        cursor.setBlockFormat(self._banner_block_format)
        cursor.insertText(f"\u22ef  {n_skipped:,} lines not shown  \u22ef", self._banner_char_format)
        cursor.block().setUserState(_BANNER_STATE)
        self._banner_no = cursor.block().blockNumber()
        self._skipped = n_skipped
        cursor.insertBlock(QtGui.QTextBlockFormat(), QtGui.QTextCharFormat())
        self._col = 0
        self._lines_rendered += 1

    # ---------------------------------------------------------- follow / status
    def _scroll_to_end(self) -> None:
        bar = self._text.verticalScrollBar()
        self._autoscrolling = True
        bar.setValue(bar.maximum())
        self._autoscrolling = False

    def _on_scrolled(self, value: int) -> None:
        if not self._autoscrolling:
            self.set_following(value >= self._text.verticalScrollBar().maximum())

    def _on_range_changed(self, _minimum: int, _maximum: int) -> None:
        if self._following and not self._autoscrolling:
            self._scroll_to_end()

    def _update_status(self) -> None:
        text = ""
        if self._paused:
            n = self._pending_chars
            size = f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B"
            text = f"Paused \u2014 {size} of output waiting"
        if text != self._status.text():
            self._status.setText(text)

    # ---------------------------------------------------------------- find/menu
    def _on_find_requested(self, text: str, backward: bool, _typed: bool = False) -> None:
        if text != self._find_text and not backward:
            # typing: search again from the start of the current match
            cursor = self._text.textCursor()
            cursor.setPosition(cursor.selectionStart())
            self._text.setTextCursor(cursor)
        self.find(text, backward=backward)

    def _highlight_all(self, text: str) -> int:
        doc = self._text.document()
        current = self._text.textCursor()
        other = QtGui.QTextCharFormat()
        other.setBackground(self._pick(_FIND_OTHER))
        other.setForeground(QtGui.QColor("#000000") if not self._dark else QtGui.QColor("#ffffff"))
        cur_fmt = QtGui.QTextCharFormat(other)
        cur_fmt.setBackground(self._pick(_FIND_CURRENT))
        selections = []
        cursor = QtGui.QTextCursor(doc)
        while len(selections) < MAX_HIGHLIGHTS:
            cursor = doc.find(text, cursor)
            if cursor.isNull():
                break
            sel = QtWidgets.QTextEdit.ExtraSelection()
            sel.cursor = cursor
            is_current = (cursor.selectionStart(), cursor.selectionEnd()) == (
                current.selectionStart(), current.selectionEnd())
            sel.format = cur_fmt if is_current else other
            selections.append(sel)
        self._text.setExtraSelections(selections)
        n = len(selections)
        more = "+" if n == MAX_HIGHLIGHTS else ""
        self._find_bar.count.setText(
            "No matches" if not n else f"{n:,}{more} match{'es' if n != 1 or more else ''}"
        )
        return n

    def context_menu(self, pos: QtCore.QPoint) -> QtWidgets.QMenu:
        """The console's context menu at ``pos`` (viewport coordinates)."""
        menu = self._text.createStandardContextMenu(pos)
        menu.addSeparator()
        menu.addAction(self.find_action)
        menu.addAction(self.pause_action)
        menu.addAction(self.clear_action)
        menu.addSeparator()
        menu.addAction(self.show_all_action)
        menu.addAction(self.save_log_action)
        return menu

    def _show_context_menu(self, pos: QtCore.QPoint) -> None:
        menu = self.context_menu(pos)
        menu.exec(self._text.viewport().mapToGlobal(pos))
        menu.deleteLater()
