"""The code editor: line numbers, Pygments highlighting, inline problems.

:class:`PygmentsHighlighter` lexes one block (line) at a time, as
``QSyntaxHighlighter`` wants, and carries the lexer's state from line to line
through the block state, so a triple-quoted Python string or a YAML block scalar
spanning several lines is coloured as one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pygments.lexer import ExtendedRegexLexer, Lexer, LexerContext, RegexLexer
from pygments.lexers import get_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.lexers.data import YamlLexer, YamlLexerContext
from pygments.lexers.markup import MarkdownLexer
from pygments.lexers.python import PythonLexer
from pygments.style import StyleMeta
from pygments.styles import get_style_by_name
from pygments.token import Error, Token, Whitespace, _TokenType
from pygments.util import ClassNotFound

from mldesk.ui.qt import QtCore, QtGui, QtWidgets, Qt, monospace_font

INDENT = "    "
#: Files larger than this are shown without highlighting (it lexes in Python).
HIGHLIGHT_MAX_CHARS = 2_000_000

LIGHT_STYLE = "default"
DARK_STYLE = "one-dark"

_LEXERS_BY_SUFFIX: dict[str, type[Lexer]] = {
    ".py": PythonLexer, ".pyw": PythonLexer, ".pyi": PythonLexer,
    ".yaml": YamlLexer, ".yml": YamlLexer,
    ".md": MarkdownLexer, ".markdown": MarkdownLexer,
}


def lexer_for_filename(name: str) -> Lexer | None:
    """Python, YAML and Markdown by suffix; any other language Pygments knows by
    its file name patterns; None for plain text."""
    cls = _LEXERS_BY_SUFFIX.get(Path(name).suffix.lower())
    if cls is not None:
        return cls()
    try:
        lexer = get_lexer_for_filename(name)
    except ClassNotFound:
        return None
    return None if isinstance(lexer, TextLexer) else lexer


def is_dark(palette: QtGui.QPalette) -> bool:
    return palette.color(QtGui.QPalette.Base).lightness() < 128


def _mix(a: QtGui.QColor, b: QtGui.QColor | str, t: float) -> QtGui.QColor:
    """``a`` moved a fraction ``t`` towards ``b``."""
    b = QtGui.QColor(b)
    return QtGui.QColor.fromRgbF(*(x + (y - x) * t for x, y in zip(a.getRgbF()[:3], b.getRgbF()[:3])))


def _utf16_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


# ------------------------------------------------------------- highlighting
_State = tuple  # a hashable snapshot of where the lexer stopped


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value


def _transition(stack: list[str], new_state) -> None:
    """Apply a Pygments state transition to ``stack`` (as pygments/lexer.py does)."""
    if isinstance(new_state, tuple):
        for state in new_state:
            if state == "#pop":
                if len(stack) > 1:
                    stack.pop()
            elif state == "#push":
                stack.append(stack[-1])
            else:
                stack.append(state)
    elif isinstance(new_state, int):
        if abs(new_state) >= len(stack):
            del stack[1:]
        else:
            del stack[new_state:]
    elif new_state == "#push":
        stack.append(stack[-1])


def _lex_regex(lexer: RegexLexer, text: str, stack: tuple[str, ...]) -> tuple[list, _State]:
    """One line through a ``RegexLexer``, from and to a saved state stack.

    Mirrors ``RegexLexer.get_tokens_unprocessed`` (which keeps its stack in a
    local) but stops at the end of the line: at the end of the text a pattern
    that matches the empty string could pop a state that the next line needs.
    """
    tokens: list = []
    pos, end = 0, len(text)
    tokendefs = lexer._tokens
    statestack = list(stack)
    statetokens = tokendefs[statestack[-1]]
    while pos < end:
        for rexmatch, action, new_state in statetokens:
            m = rexmatch(text, pos)
            if m:
                if action is not None:
                    if type(action) is _TokenType:
                        tokens.append((pos, action, m.group()))
                    else:
                        tokens.extend(action(lexer, m))
                pos = m.end()
                if new_state is not None:
                    _transition(statestack, new_state)
                    statetokens = tokendefs[statestack[-1]]
                break
        else:
            if text[pos] == "\n":  # at EOL, reset state to "root"
                statestack = ["root"]
                statetokens = tokendefs["root"]
                tokens.append((pos, Whitespace, "\n"))
            else:
                tokens.append((pos, Error, text[pos]))
            pos += 1
    return tokens, tuple(statestack)


def _lex_extended(lexer: ExtendedRegexLexer, text: str, state: _State | None) -> tuple[list, _State]:
    """One line through an ``ExtendedRegexLexer`` from a saved context (its stack
    plus lexer-specific fields such as YAML's indentation); like
    :func:`_lex_regex` it stops at the end of the line."""
    ctx = (YamlLexerContext if isinstance(lexer, YamlLexer) else LexerContext)(text, 0)
    for name, value in state or ():
        setattr(ctx, name, list(value) if isinstance(value, tuple) else value)
    tokens: list = []
    tokendefs = lexer._tokens
    statetokens = tokendefs[ctx.stack[-1]]
    while ctx.pos < ctx.end:
        for rexmatch, action, new_state in statetokens:
            m = rexmatch(text, ctx.pos, ctx.end)
            if m:
                if action is not None:
                    if type(action) is _TokenType:
                        tokens.append((ctx.pos, action, m.group()))
                        ctx.pos = m.end()
                    else:
                        tokens.extend(action(lexer, m, ctx))  # sets ctx.pos
                        if not new_state:
                            statetokens = tokendefs[ctx.stack[-1]]
                if new_state is not None:
                    _transition(ctx.stack, new_state)
                    statetokens = tokendefs[ctx.stack[-1]]
                break
        else:
            if text[ctx.pos] == "\n":
                ctx.stack = ["root"]
                statetokens = tokendefs["root"]
                tokens.append((ctx.pos, Whitespace, "\n"))
            else:
                tokens.append((ctx.pos, Error, text[ctx.pos]))
            ctx.pos += 1
    saved = tuple(
        sorted((k, _freeze(v)) for k, v in vars(ctx).items() if k not in ("text", "pos", "end"))
    )
    return tokens, saved


class PygmentsHighlighter(QtGui.QSyntaxHighlighter):
    """Colours a document with a Pygments lexer and style, line by line."""

    def __init__(
        self, document: QtGui.QTextDocument, lexer: Lexer | None = None, style: str = LIGHT_STYLE
    ) -> None:
        super().__init__(document)
        self._lexer = lexer
        self._formats: dict[_TokenType, QtGui.QTextCharFormat | None] = {}
        self._style: StyleMeta = get_style_by_name(style)
        # block state <-> lexer state: Qt stores an int per block
        self._state_ids: dict[_State, int] = {}
        self._states: list[_State] = []

    @property
    def lexer(self) -> Lexer | None:
        return self._lexer

    def set_lexer(self, lexer: Lexer | None, *, rehighlight: bool = True) -> None:
        self._lexer = lexer
        self._state_ids.clear()
        self._states.clear()
        if rehighlight:
            self.rehighlight()

    def set_style(self, name: str) -> None:
        style = get_style_by_name(name)
        if style is not self._style:
            self._style = style
            self._formats.clear()
            self.rehighlight()

    def style_name(self) -> str:
        return self._style.name

    def format_for(self, ttype: _TokenType) -> QtGui.QTextCharFormat | None:
        """The format of a token type (None: the default text format)."""
        try:
            return self._formats[ttype]
        except KeyError:
            pass
        known = ttype
        while not self._style.styles_token(known) and known.parent is not None:
            known = known.parent  # token types a lexer made up inherit their parent's look
        spec = self._style.style_for_token(known)
        fmt: QtGui.QTextCharFormat | None = QtGui.QTextCharFormat()
        if spec["color"]:
            fmt.setForeground(QtGui.QColor(f"#{spec['color']}"))
        if spec["bold"]:
            fmt.setFontWeight(QtGui.QFont.Bold)
        if spec["italic"]:
            fmt.setFontItalic(True)
        if spec["underline"]:
            fmt.setFontUnderline(True)
        if not (spec["color"] or spec["bold"] or spec["italic"] or spec["underline"]):
            fmt = None
        self._formats[ttype] = fmt
        return fmt

    def _state_id(self, state: _State) -> int:
        sid = self._state_ids.get(state)
        if sid is None:
            sid = self._state_ids[state] = len(self._states)
            self._states.append(state)
        return sid

    def _tokens(self, text: str) -> Iterator[tuple[int, _TokenType, str]]:
        lexer = self._lexer
        prev = self.previousBlockState()
        line = text + "\n"
        if isinstance(lexer, ExtendedRegexLexer):
            state = self._states[prev] if 0 <= prev < len(self._states) else None
            tokens, end = _lex_extended(lexer, line, state)
        elif isinstance(lexer, RegexLexer):
            stack = self._states[prev] if 0 <= prev < len(self._states) else ("root",)
            tokens, end = _lex_regex(lexer, line, stack)
        else:
            tokens, end = list(lexer.get_tokens_unprocessed(line)), ()
        self.setCurrentBlockState(self._state_id(end))
        return iter(tokens)

    def highlightBlock(self, text: str) -> None:
        if self._lexer is None:
            return
        # Qt counts UTF-16 units, Python code points: map when they differ
        wide = not text.isascii() and len(text.encode("utf-16-le")) // 2 != len(text)
        offsets = None
        if wide:
            offsets = [0]
            for ch in text:
                offsets.append(offsets[-1] + (2 if ord(ch) > 0xFFFF else 1))
        for pos, ttype, value in self._tokens(text):
            if pos >= len(text) or ttype is Token.Text or ttype is Whitespace:
                continue
            fmt = self.format_for(ttype)
            if fmt is None:
                continue
            end = min(pos + len(value), len(text))
            if offsets is not None:
                self.setFormat(offsets[pos], offsets[end] - offsets[pos], fmt)
            else:
                self.setFormat(pos, end - pos, fmt)


# ------------------------------------------------------------------ editor
@dataclass(frozen=True)
class Problem:
    """One issue to show in the editor; ``line`` and ``column`` count from 1."""

    line: int
    column: int
    message: str
    severity: str = "error"  # "error" | "warning" | "info"


_SEVERITY_COLORS = {  # (light, dark)
    "error": ("#d32f2f", "#ff6b6b"),
    "warning": ("#c88a00", "#e5b84a"),
    "info": ("#1f6fd1", "#6aa7f0"),
}


_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


class _LineNumberArea(QtWidgets.QWidget):
    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.setObjectName("lineNumberArea")
        self._editor = editor

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(self._editor.line_number_area_width(), 0)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        self._editor._paint_line_numbers(event)

    def event(self, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.ToolTip:
            block = self._editor.cursorForPosition(QtCore.QPoint(0, event.pos().y())).block()
            self._editor._show_problem_tooltip(block.blockNumber() + 1, event.globalPos(), self)
            return True
        return super().event(event)


class CodeEditor(QtWidgets.QPlainTextEdit):
    """Plain-text code editor for a lab's files.

    Inherits ``modificationChanged(bool)`` from ``QPlainTextEdit``: it fires when
    the text first differs from the loaded/saved file and when it is saved.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._ready = False
        self.setObjectName("codeEditor")
        self._path: Path | None = None
        self._newline = "\n"
        self._problems: dict[int, list[Problem]] = {}
        self._problem_list: list[Problem] = []
        #: Why the last :meth:`save` failed ("" after a success).
        self.last_error = ""
        #: True when the file was not valid UTF-8 (shown with replacement characters,
        #: opened read-only so saving cannot damage it).
        self.decoding_error = False

        self.setFont(monospace_font())
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
        self.setTabStopDistance(len(INDENT) * self.fontMetrics().horizontalAdvance(" "))
        self.setCursorWidth(2)
        self._gutter = _LineNumberArea(self)
        self._highlighter = PygmentsHighlighter(self.document())
        self._apply_palette()

        self.blockCountChanged.connect(self._update_gutter_width)
        self.updateRequest.connect(self._update_gutter)
        self.cursorPositionChanged.connect(self._update_extra_selections)
        self._update_gutter_width()
        self._ready = True

    # ------------------------------------------------------------- files
    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def is_modified(self) -> bool:
        return self.document().isModified()

    @property
    def highlighter(self) -> PygmentsHighlighter:
        return self._highlighter

    def load_file(self, path: str | os.PathLike[str]) -> None:
        """Show the file at ``path`` (UTF-8).  Raises ``OSError`` if it cannot
        be read.  A file that is not UTF-8 opens read-only (see
        :attr:`decoding_error`)."""
        path = Path(path)
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
            self.decoding_error = False
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            self.decoding_error = True
        self._path = path
        self.load_text(text, path.name)
        self.setReadOnly(self.decoding_error)

    def load_text(self, text: str, file_name: str = "") -> None:
        """Show ``text`` (for instance a snapshot's file), highlighted as
        ``file_name`` suggests.  Not tied to a path: use :meth:`load_file` for that."""
        self._newline = "\r\n" if "\r\n" in text else "\n"
        text = text.replace("\r\n", "\n")
        lexer = lexer_for_filename(file_name) if len(text) <= HIGHLIGHT_MAX_CHARS else None
        self._highlighter.set_lexer(None, rehighlight=False)  # lex the new text once
        self.setPlainText(text)
        self._highlighter.set_lexer(lexer)
        self.document().setModified(False)
        self.set_problems([])

    def save(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Write the text to ``path`` (default: the loaded file), atomically and
        with the file's original line endings and permissions.  False (and
        :attr:`last_error` says why) if it could not be written."""
        target = Path(path) if path is not None else self._path
        if target is None:
            self.last_error = "There is no file to save to."
            return False
        if self.decoding_error and path is None:
            self.last_error = f"{target.name} is not UTF-8 text; it was opened read-only."
            return False
        data = self.toPlainText().replace("\n", self._newline).encode("utf-8")
        try:
            _write_atomically(target, data)
        except OSError as exc:
            self.last_error = f"Could not save {target}: {exc.strerror or exc}"
            return False
        self._path = target
        self.last_error = ""
        self.document().setModified(False)
        return True

    # ----------------------------------------------------------- problems
    def set_problems(self, problems: Iterable[tuple[int, int, str, str] | Problem]) -> None:
        """Underline problems (wavy, coloured by severity) and explain them in
        a tooltip.  Each is ``(line, column, message, severity)``, counted from
        1; column 0 marks the whole line."""
        self._problem_list = [p if isinstance(p, Problem) else Problem(*p) for p in problems]
        self._problems = {}
        for problem in self._problem_list:
            self._problems.setdefault(problem.line, []).append(problem)
        self._update_extra_selections()
        self._gutter.update()

    def problems(self) -> list[Problem]:
        return list(self._problem_list)

    def problem_text(self, line: int) -> str | None:
        """The tooltip for a line (1-based), or None when it has no problems."""
        found = self._problems.get(line)
        if not found:
            return None
        return "\n".join(
            f"{p.severity.capitalize()} (line {p.line}, column {p.column}): {p.message}"
            if p.column else f"{p.severity.capitalize()} (line {p.line}): {p.message}"
            for p in found
        )

    def _show_problem_tooltip(self, line: int, global_pos: QtCore.QPoint, widget) -> None:
        text = self.problem_text(line)
        if text:
            QtWidgets.QToolTip.showText(global_pos, text, widget)
        else:
            QtWidgets.QToolTip.hideText()

    def viewportEvent(self, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.ToolTip:
            line = self.cursorForPosition(event.pos()).blockNumber() + 1
            self._show_problem_tooltip(line, event.globalPos(), self.viewport())
            return True
        return super().viewportEvent(event)

    def _severity_color(self, severity: str) -> QtGui.QColor:
        pair = _SEVERITY_COLORS.get(severity, _SEVERITY_COLORS["error"])
        return QtGui.QColor(pair[self._dark])

    def _update_extra_selections(self) -> None:
        selections = []
        current = QtWidgets.QTextEdit.ExtraSelection()
        current.format.setBackground(self._current_line_color)
        current.format.setProperty(QtGui.QTextFormat.FullWidthSelection, True)
        current.cursor = self.textCursor()
        current.cursor.clearSelection()
        selections.append(current)
        doc = self.document()
        for problem in self._problem_list:
            block = doc.findBlockByNumber(min(max(problem.line, 1), doc.blockCount()) - 1)
            text = block.text()
            col = problem.column - 1
            if not 0 <= col < len(text):  # no (or no valid) column: the whole line
                col = len(text) - len(text.lstrip())
            start, end = _utf16_len(text[:col]), block.length() - 1
            if end <= start:
                start = max(end - 1, 0)
            sel = QtWidgets.QTextEdit.ExtraSelection()
            sel.format.setUnderlineStyle(QtGui.QTextCharFormat.SpellCheckUnderline)
            sel.format.setUnderlineColor(self._severity_color(problem.severity))
            sel.cursor = QtGui.QTextCursor(block)
            sel.cursor.setPosition(block.position() + start)
            sel.cursor.setPosition(block.position() + end, QtGui.QTextCursor.KeepAnchor)
            selections.append(sel)
        self.setExtraSelections(selections)

    # -------------------------------------------------------------- gutter
    def line_number_area_width(self) -> int:
        digits = max(2, len(str(max(1, self.blockCount()))))
        fm = self.fontMetrics()
        return 10 + fm.horizontalAdvance("9") * digits + fm.height() // 2 + 6

    def _update_gutter_width(self, _count: int = 0) -> None:
        self.setViewportMargins(self.line_number_area_width(), 0, 0, 0)

    def _update_gutter(self, rect: QtCore.QRect, dy: int) -> None:
        if dy:
            self._gutter.scroll(0, dy)
        else:
            self._gutter.update(0, rect.y(), self._gutter.width(), rect.height())
        if rect.contains(self.viewport().rect()):
            self._update_gutter_width()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        cr = self.contentsRect()
        self._gutter.setGeometry(
            QtCore.QRect(cr.left(), cr.top(), self.line_number_area_width(), cr.height())
        )

    def _paint_line_numbers(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self._gutter)
        painter.fillRect(event.rect(), self._gutter_bg)
        painter.setPen(self._gutter_border)
        right = self._gutter.width() - 1
        painter.drawLine(right, event.rect().top(), right, event.rect().bottom())
        fm = self.fontMetrics()
        marker = fm.height() // 2
        block = self.firstVisibleBlock()
        number = block.blockNumber()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        bottom = top + round(self.blockBoundingRect(block).height())
        current = self.textCursor().blockNumber()
        text_right = self._gutter.width() - 8
        bold = QtGui.QFont(self.font())
        bold.setBold(True)
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible() and bottom >= event.rect().top():
                problems = self._problems.get(number + 1)
                if problems:
                    worst = min(problems, key=lambda p: _SEVERITY_RANK.get(p.severity, 0))
                    painter.setRenderHint(QtGui.QPainter.Antialiasing)
                    painter.setPen(Qt.NoPen)
                    painter.setBrush(self._severity_color(worst.severity))
                    y = top + (fm.height() - marker) // 2
                    painter.drawEllipse(5, y, marker, marker)
                is_current = number == current
                painter.setFont(bold if is_current else self.font())
                painter.setPen(self._number_current if is_current else self._number_color)
                painter.drawText(0, top, text_right, fm.height(), Qt.AlignRight, str(number + 1))
            block = block.next()
            top = bottom
            bottom = top + round(self.blockBoundingRect(block).height())
            number += 1
        painter.end()

    # ------------------------------------------------------------- palette
    def _apply_palette(self) -> None:
        pal = self.palette()
        self._dark = int(is_dark(pal))
        base, text = pal.color(QtGui.QPalette.Base), pal.color(QtGui.QPalette.Text)
        if self._dark:
            self._current_line_color = _mix(base, "#ffffff", 0.055)
            self._gutter_bg = _mix(base, "#ffffff", 0.025)
        else:
            self._current_line_color = _mix(base, pal.color(QtGui.QPalette.Highlight), 0.07)
            self._gutter_bg = _mix(base, "#000000", 0.03)
        self._gutter_border = _mix(base, text, 0.12)
        self._number_color = _mix(base, text, 0.45)
        self._number_current = text
        self._highlighter.set_style(DARK_STYLE if self._dark else LIGHT_STYLE)
        self._update_extra_selections()
        self._gutter.update()

    def changeEvent(self, event: QtCore.QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QtCore.QEvent.PaletteChange and self._ready:
            self._apply_palette()

    # ------------------------------------------------------------ editing
    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if self.isReadOnly():
            super().keyPressEvent(event)
            return
        key, mods = event.key(), event.modifiers()
        cursor = self.textCursor()
        if key == Qt.Key_Tab and not (mods & (Qt.ControlModifier | Qt.AltModifier)):
            if cursor.hasSelection() and "\u2029" in cursor.selectedText():
                self._indent_selection(dedent=False)
            else:
                col = cursor.positionInBlock()
                cursor.insertText(" " * (len(INDENT) - col % len(INDENT)))
            return
        if key == Qt.Key_Backtab:
            self._indent_selection(dedent=True)
            return
        if key == Qt.Key_Backspace and not cursor.hasSelection() and not mods:
            before = cursor.block().text()[: cursor.positionInBlock()]
            if before and not before.strip(" "):  # in the indentation: one level back
                n = (len(before) - 1) % len(INDENT) + 1
                cursor.movePosition(QtGui.QTextCursor.Left, QtGui.QTextCursor.KeepAnchor, n)
                cursor.removeSelectedText()
                return
        if key in (Qt.Key_Return, Qt.Key_Enter) and not (mods & ~Qt.KeypadModifier):
            line = cursor.block().text()
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            before = line[: cursor.positionInBlock()].rstrip()
            if before.endswith(":") and isinstance(self._highlighter.lexer, PythonLexer):
                indent += INDENT
            cursor.beginEditBlock()
            cursor.insertText("\n" + indent)
            cursor.endEditBlock()
            self.ensureCursorVisible()
            return
        super().keyPressEvent(event)

    def _indent_selection(self, dedent: bool) -> None:
        cursor = self.textCursor()
        doc = self.document()
        first = doc.findBlock(cursor.selectionStart())
        last = doc.findBlock(cursor.selectionEnd())
        if cursor.hasSelection() and last != first and cursor.selectionEnd() == last.position():
            last = last.previous()  # a selection ending at a line start leaves that line alone
        edit = QtGui.QTextCursor(doc)
        edit.beginEditBlock()
        block = first
        while block.isValid():
            edit.setPosition(block.position())
            text = block.text()
            if dedent:
                n = min(len(text) - len(text.lstrip(" ")), len(INDENT))
                if text.startswith("\t"):
                    n = 1
                edit.movePosition(QtGui.QTextCursor.Right, QtGui.QTextCursor.KeepAnchor, n)
                edit.removeSelectedText()
            elif text.strip():
                edit.insertText(INDENT)
            if block == last:
                break
            block = block.next()
        edit.endEditBlock()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename it over ``path``,
    keeping the file's permissions; a crash never leaves half a file."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
