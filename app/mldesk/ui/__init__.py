"""mldesk's PySide6 user interface: widgets, models and dialogs.

Every Qt name the UI uses is imported through :mod:`mldesk.ui.qt`.

``launch()`` is the entry for tests and benchmarks (a window, no event loop);
``main()`` runs the application (``mldesk`` and ``mldesk open LAB``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from mldesk.engine.facade import Engine
    from mldesk.ui.mainwindow import MainWindow

APP_NAME = "mldesk"


def application():
    """The QApplication (created, with its names set, when there is none)."""
    from mldesk.ui.qt import QtCore, QtGui, QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        QtCore.QCoreApplication.setOrganizationName(APP_NAME)
        QtCore.QCoreApplication.setOrganizationDomain("mldesk.dev")
        QtCore.QCoreApplication.setApplicationName(APP_NAME)
        from mldesk import resources

        QtGui.QGuiApplication.setDesktopFileName(resources.APP_ID)  # matches the .desktop file
        app = QtWidgets.QApplication(sys.argv[:1])
        icon = QtGui.QIcon()
        for path in resources.icon_files():
            icon.addFile(str(path))
        app.setWindowIcon(icon)
    else:
        if not QtCore.QCoreApplication.applicationName() or \
                QtCore.QCoreApplication.applicationName() in ("python", "python3", "pytest"):
            QtCore.QCoreApplication.setApplicationName(APP_NAME)
        if not QtCore.QCoreApplication.organizationName():
            QtCore.QCoreApplication.setOrganizationName(APP_NAME)
    return app


def launch(lab: str | Path | None = None, home: str | Path | None = None, *,
           runtime: str | None = None, engine: "Engine | None" = None, show: bool = True) -> "MainWindow":
    """Create the QApplication if there is none, and a main window on ``lab`` (else
    the last lab opened, else the welcome screen); show it and return it without
    entering the event loop. ``home`` is the data folder (default MLDESK_HOME or the
    platform's); ``runtime`` forces ``docker`` or ``process`` (default: automatic).
    The window owns (and closes) the engine unless one is passed in."""
    application()
    from mldesk.engine.facade import Engine
    from mldesk.ui.errors import install_excepthook
    from mldesk.ui.mainwindow import MainWindow

    owns = engine is None
    eng = engine if engine is not None else Engine(home)
    from mldesk.engine import labs, queries

    install_excepthook(queries.data_root(eng))
    window = MainWindow(eng, owns_engine=owns, runtime=runtime)
    target = Path(lab).expanduser() if lab else None
    if target is None:
        recent = [p for p in labs.recent_labs(eng, 5) if Path(p).is_dir()]
        target = Path(recent[0]) if recent else None
    if target is not None:
        if not window.open_lab(target) and lab:
            window.show_welcome()
    if show:
        window.show()
    return window


def main(lab: str | Path | None = None) -> int:
    """Run the desktop app until its window closes; returns the exit status."""
    import asyncio
    import signal

    from mldesk.ui.qt import QtCore, QtWidgets

    app = application()
    app.setQuitOnLastWindowClosed(True)
    import qasync

    from mldesk.ui import aio

    from mldesk.engine import queries
    from mldesk.ui import single

    name = single.server_name(queries.default_home())
    if single.forward(name, str(Path(lab).expanduser().resolve()) if lab else ""):
        return 0  # the running app opens it and comes forward
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    aio.install(loop)  # the window's async slots run on it
    try:
        window = launch(lab)
    except Exception as exc:  # noqa: BLE001 - a store we cannot open: say why, no traceback
        from mldesk.ui.errors import describe, is_user_error, write_crash

        if not is_user_error(exc):  # a bug: its traceback goes to crash.log (and the log)
            import logging

            write_crash(type(exc), exc, exc.__traceback__)
            logging.getLogger("mldesk.ui").error("mldesk cannot start", exc_info=exc)
        QtWidgets.QMessageBox.critical(None, "mldesk cannot start",
                                       f"{describe(exc)}.\n\nCheck the data folder (MLDESK_HOME) and try again.")
        return 1
    def from_second_app(message: str) -> None:
        if message:
            window.open_lab(message)
        window.notifier.raise_window()

    server = single.InstanceServer(name, from_second_app, window)  # noqa: F841 - lives with the window
    # Ctrl-C in the terminal quits (Python only sees signals while it runs: wake it).
    signal.signal(signal.SIGINT, lambda *_a: window.close())
    waker = QtCore.QTimer()
    waker.timeout.connect(lambda: None)
    waker.start(300)
    quitting = asyncio.Event()
    app.aboutToQuit.connect(quitting.set)
    with loop:
        loop.run_until_complete(quitting.wait())
        window.shutdown()  # cancels what is in flight while the loop still exists
    return 0


__all__ = ["launch", "main", "application"]
