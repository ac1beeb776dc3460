"""One app per data folder: a second ``mldesk open`` hands its lab to the running window and exits."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path
from typing import Callable

from PySide6 import QtNetwork  # the one QtNetwork use; everything else comes through mldesk.ui.qt

from mldesk.ui.qt import QtCore


def server_name(home: Path | str) -> str:
    """The local socket's name: per user and data folder."""
    digest = hashlib.sha1(f"{getpass.getuser()}:{Path(home).resolve()}".encode()).hexdigest()[:16]
    return f"mldesk-{digest}"


def forward(name: str, message: str, timeout_ms: int = 1000) -> bool:
    """Send ``message`` (a lab path, or "" to just raise the window) to a running app;
    False when none answers."""
    sock = QtNetwork.QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(message.encode("utf-8") + b"\n")
    ok = sock.waitForBytesWritten(timeout_ms)
    sock.disconnectFromServer()
    return ok


class InstanceServer(QtCore.QObject):
    """Listens for :func:`forward` calls and hands each message to ``on_message``."""

    def __init__(self, name: str, on_message: Callable[[str], None], parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.on_message = on_message
        self.server = QtNetwork.QLocalServer(self)
        self.server.setSocketOptions(QtNetwork.QLocalServer.UserAccessOption)
        if not self.server.listen(name):
            QtNetwork.QLocalServer.removeServer(name)  # left over by a crashed app
            self.server.listen(name)
        self.server.newConnection.connect(self._accept)

    def listening(self) -> bool:
        return self.server.isListening()

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            buf = bytearray()

            def read(s=sock, b=buf) -> None:
                b.extend(bytes(s.readAll()))
                if b.endswith(b"\n"):
                    s.disconnectFromServer()
                    self.on_message(b.decode("utf-8", "replace").strip())

            sock.readyRead.connect(read)
            sock.disconnected.connect(sock.deleteLater)

    def close(self) -> None:
        self.server.close()
