"""Files the running app needs besides code: the application icon.

Qt-free on purpose (only paths), so any layer may ask. The icons are copies of
``resources/icons/`` made by ``resources/render_icons.py``; they are package data,
so they are in the wheel and in the PyInstaller bundle alike.

In the UI::

    icon = QtGui.QIcon()
    for path in resources.icon_files():
        icon.addFile(str(path))
    app.setWindowIcon(icon)
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

#: The reverse-DNS application id: desktop file, AppStream id, icon name.
APP_ID = "io.mldesk.MLDesk"
#: Rendered PNG sizes (the SVG covers everything else).
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def icons_dir() -> Path:
    """The folder holding the icon files (a real folder: wheel, editable and frozen)."""
    with as_file(files(__name__).joinpath("icons")) as path:
        return Path(path)


def icon_files(svg: bool = True) -> list[Path]:
    """The icon's PNG files, smallest first, then (when ``svg``) the SVG."""
    folder = icons_dir()
    paths = [folder / f"{APP_ID}-{size}.png" for size in ICON_SIZES]
    if svg:
        paths.append(folder / f"{APP_ID}.svg")
    return [p for p in paths if p.is_file()]
