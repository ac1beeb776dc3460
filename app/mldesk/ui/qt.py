"""The one module through which the UI imports Qt.

Everything under ``mldesk.ui`` does ``from mldesk.ui.qt import QtCore, QtGui,
QtWidgets, Qt, Signal, Slot`` instead of importing PySide6 itself, so the binding
(and any version work-arounds) live in one place, as in qutebrowser's ``qt``
wrapper.  ``mldesk.core`` and ``mldesk.runtimes`` never import this module.
"""

from __future__ import annotations

import PySide6
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Property, QObject, Qt, QTimer, Signal, Slot

#: Version of the Qt library in use.
QT_VERSION: str = QtCore.qVersion()
#: Version of the PySide6 binding.
BINDING_VERSION: str = PySide6.__version__


def monospace_font(point_delta: int = 0) -> QtGui.QFont:
    """The system's fixed-pitch font (the same one for the editor and the console)."""
    font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QtGui.QFont.StyleHint.Monospace)
    font.setFixedPitch(True)
    if point_delta and font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() + point_delta)
    return font


__all__ = [
    "BINDING_VERSION",
    "Property",
    "QObject",
    "QT_VERSION",
    "QTimer",
    "Qt",
    "QtCore",
    "QtGui",
    "QtWidgets",
    "Signal",
    "Slot",
    "monospace_font",
]
