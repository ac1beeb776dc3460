"""Render the application icon's PNG sizes from its SVG, offscreen, with Qt.

    .venv/bin/python resources/render_icons.py          # write the PNGs
    .venv/bin/python resources/render_icons.py --check  # exit 1 if any is stale

Writes ``resources/icons/hicolor/NxN/apps/io.mldesk.MLDesk.png`` for every size
in SIZES (16 and 24 from the simplified ``-small.svg``, which stays legible at
that size), copies the SVG there as ``scalable/apps/``, and copies the whole set
into the package (``app/mldesk/resources/icons/``) so that the running app can
set its window icon (``mldesk.resources.icon_files()``), and packs the same PNGs
into ``io.mldesk.MLDesk.ico`` (Windows: the .exe and the installer) and
``io.mldesk.MLDesk.icns`` (macOS: the .app), both plain PNG containers, so no
platform tool (iconutil, ImageMagick) is needed. The outputs are committed:
building a package never needs this script.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "io.mldesk.MLDesk"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SMALL_UP_TO = 24
ICONS = ROOT / "resources" / "icons"
SVG = ICONS / f"{APP_ID}.svg"
SMALL_SVG = ICONS / f"{APP_ID}-small.svg"
HICOLOR = ICONS / "hicolor"
PACKAGE_ICONS = ROOT / "app" / "mldesk" / "resources" / "icons"


def render(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {svg} is not a valid SVG for Qt")
    image = QImage(size, size, QImage.Format_ARGB32_Premultiplied)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setRenderHint(QPainter.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    if not image.save(buf, "PNG"):
        raise SystemExit(f"render_icons: could not encode {size}x{size} PNG")
    buf.close()
    return bytes(data.data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico holding PNG images (supported since Windows Vista)."""
    sizes = [s for s in sorted(pngs) if s <= 256]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        data = pngs[size]
        dim = 0 if size == 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    return header + entries + blobs


#: icns element types holding PNG data, by pixel size (the @2x types reuse a size).
ICNS_TYPES = [(b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256),
              (b"ic09", 512), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256), (b"ic14", 512)]


def icns(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns made of PNG elements (supported since OS X 10.7)."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
                    for kind, size in ICNS_TYPES if size in pngs)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def wanted() -> dict[Path, bytes]:
    """Every file this script owns, with the content it should have."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts/painting need it
    files: dict[Path, bytes] = {}
    svg_bytes = SVG.read_bytes()
    files[HICOLOR / "scalable" / "apps" / f"{APP_ID}.svg"] = svg_bytes
    files[PACKAGE_ICONS / f"{APP_ID}.svg"] = svg_bytes
    pngs = {}
    for size in SIZES:
        png = pngs[size] = render(SMALL_SVG if size <= SMALL_UP_TO and SMALL_SVG.exists() else SVG, size)
        files[HICOLOR / f"{size}x{size}" / "apps" / f"{APP_ID}.png"] = png
        files[PACKAGE_ICONS / f"{APP_ID}-{size}.png"] = png
    files[ICONS / f"{APP_ID}.ico"] = ico(pngs)
    files[ICONS / f"{APP_ID}.icns"] = icns(pngs)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report files that differ from a fresh render")
    args = ap.parse_args(argv)
    stale = []
    for path, data in wanted().items():
        if path.exists() and path.read_bytes() == data:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for path in stale:
        print(("stale: " if args.check else "wrote ") + str(path.relative_to(ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
