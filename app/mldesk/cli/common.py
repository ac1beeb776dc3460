"""What every CLI command shares: the error type, exit codes and engine access."""

from __future__ import annotations

from mldesk.engine import UserError

EXIT_USAGE = 2


class CliError(UserError):
    """A usage problem found by the CLI itself (one line, exit ``code``)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = self.exit_code = code


def engine():
    """The engine, after reattaching: every mldesk process that starts gives each
    active execution whose supervisor died (or never started) a new one."""
    from mldesk.engine.facade import Engine

    eng = Engine()
    eng.fork_supervisors = True
    eng.recover()
    return eng


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Rows of strings as left-aligned columns two spaces apart (the first row: headers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
