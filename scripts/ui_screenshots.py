"""Screenshots of every screen of the desktop window, on a demo lab.

    Xvfb :101 -screen 0 1600x1000x24 &
    DISPLAY=:101 QT_QPA_PLATFORM=xcb .venv/bin/python scripts/ui_screenshots.py [OUT_DIR]

Runs real executions (process runtime) in a temporary MLDESK_HOME: one running,
one finished, one failed, one with a 200,000-line log; stops what it started.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

MAIN_PY = r'''
"""Train a small convolutional network on MNIST (demo: simulated numbers)."""
import argparse, math, os, struct, sys, time, zlib

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()

GREEN, YELLOW, CYAN, BOLD, DIM, RESET = "\033[32m", "\033[33m", "\033[36m", "\033[1m", "\033[2m", "\033[0m"
print(f"{BOLD}mnist-cnn{RESET}  epochs={args.epochs}  lr={args.lr}")
print(f"{DIM}loading inputs/mnist.npz (60000 train, 10000 test){RESET}")
print("warning: no GPU found, training on the CPU", file=sys.stderr)
losses = []
for epoch in range(1, args.epochs + 1):
    for step in range(0, 101, 20):
        bar = "#" * (step // 5) + "." * (20 - step // 5)
        sys.stdout.write(f"\repoch {epoch:2d} [{bar}] {step:3d}%")
        sys.stdout.flush()
        time.sleep(args.delay / 5)
    loss = 2.3 * math.exp(-0.45 * epoch) + 0.05
    acc = 1 - loss / 2.5
    losses.append(loss)
    color = GREEN if acc > 0.9 else YELLOW
    print(f"  loss {CYAN}{loss:.4f}{RESET}  accuracy {color}{acc:.2%}{RESET}")
    if args.lr > 0.05 and epoch == 3:
        raise FloatingPointError(f"loss became NaN at epoch {epoch} (learning rate {args.lr} too high?)")

os.makedirs("outputs", exist_ok=True)
W, H = 360, 220
px = [[(255, 255, 255)] * W for _ in range(H)]
for x in range(30, W - 10):
    px[H - 25][x] = (90, 90, 90)
for y in range(10, H - 25):
    px[y][30] = (90, 90, 90)
for x in range(31, W - 10):
    t = (x - 31) / (W - 42) * (len(losses) - 1)
    lo = losses[int(t)] if int(t) + 1 >= len(losses) else losses[int(t)] * (1 - t % 1) + losses[int(t) + 1] * (t % 1)
    y = int(H - 26 - lo / 2.4 * (H - 40))
    for dy in (-1, 0, 1):
        if 0 <= y + dy < H:
            px[y + dy][x] = (47, 123, 234)
raw = b"".join(b"\0" + bytes(c for p in row for c in p) for row in px)
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open("outputs/loss.png", "wb").write(png)
with open("outputs/metrics.csv", "w") as f:
    f.write("epoch,loss\n" + "".join(f"{i},{l:.4f}\n" for i, l in enumerate(losses, 1)))
open("outputs/model.txt", "w").write("conv(32) -> conv(64) -> dense(128) -> dense(10)\n")
print(f"{GREEN}saved outputs/loss.png, outputs/metrics.csv{RESET}")
'''

ML_YAML = """\
# mnist-cnn: a small convolutional network (demo)
dockerImageId: keras_v2-0-x_python_3-1
hardwareType: cpu
parameters:
  - pass-as: '--epochs=8'     # more epochs: lower loss
  - pass-as: '--lr=0.01'
inputs:
  - name: mnist.npz
    url: https://s3.amazonaws.com/img-datasets/mnist.npz
  - name: labels.csv
    url: {labels}
"""


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mldesk-shots-"))
    home = tmp / "home"
    os.environ["MLDESK_HOME"] = str(home)
    labs = tmp / "labs"
    lab = labs / "mnist-cnn"
    lab.mkdir(parents=True)
    (lab / "main.py").write_text(MAIN_PY.lstrip())
    data = tmp / "data"
    data.mkdir()
    (data / "labels.csv").write_text("id,label\n" + "".join(f"{i},{i % 10}\n" for i in range(5000)))
    (lab / "ml.yaml").write_text(ML_YAML.format(labels=(data / "labels.csv").as_uri()))
    (lab / "README.md").write_text("# mnist-cnn\n\nA small CNN on MNIST.\n")
    (lab / "model.py").write_text("LAYERS = [32, 64, 128, 10]\n")
    other = labs / "xor"
    from mldesk.templates import create_lab

    create_lab(other, "xor")

    from mldesk.engine.facade import Engine

    eng = Engine(home)
    eng.store.touch_recent_lab(str(other.resolve()))
    eng.store.touch_recent_lab(str(lab.resolve()))

    def wait_final(ex_id, timeout=60):
        end = time.time() + timeout
        while time.time() < end and not eng.get(ex_id).final:
            time.sleep(0.05)
        return eng.get(ex_id)

    # the inputs are file:// and http URLs: run without fetching the http one
    yaml_run = ML_YAML.format(labels=(data / "labels.csv").as_uri())
    no_http = "\n".join(l for l in yaml_run.splitlines()
                        if "mnist.npz" not in l and "s3.amazonaws" not in l) + "\n"
    (lab / "ml.yaml").write_text(no_http.replace("--epochs=8", "--epochs=8"))
    big_lab = tmp / "biglog"
    big_lab.mkdir()
    (big_lab / "main.py").write_text(textwrap.dedent("""
        import sys
        w = sys.stdout.write
        w("\\033[1mgenerating 200,000 lines\\033[0m\\n")
        for i in range(200000):
            if i % 40 == 39:
                w(f"step {i:6d}  \\033[33mcheckpoint saved\\033[0m  (\\033[32m{i // 40}\\033[0m so far)\\n")
            else:
                w(f"step {i:6d}  loss \\033[36m{1/(i+1):.6f}\\033[0m\\n")
        w("\\033[32mdone\\033[0m\\n")
    """).lstrip())
    a = eng.run(lab, runtime="process", name="baseline, lr 0.01", allow_local_inputs=True)
    wait_final(a.id)
    (lab / "ml.yaml").write_text(no_http.replace("--lr=0.01", "--lr=0.1"))
    b = eng.run(lab, runtime="process", name="lr 0.1", allow_local_inputs=True)
    wait_final(b.id)
    (lab / "ml.yaml").write_text(no_http.replace("--epochs=8", "--epochs=400").replace(
        "--lr=0.01", "--lr=0.01' \n  - pass-as: '--delay=1.5"))
    c = eng.run(lab, runtime="process", name="long run, 400 epochs", allow_local_inputs=True)
    (lab / "ml.yaml").write_text(ML_YAML.format(labels=(data / "labels.csv").as_uri()))
    (lab / "main.py").write_text(MAIN_PY.lstrip().replace("default=8", "default=10"))
    eng.close()

    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    from mldesk import ui
    from mldesk.ui.qt import QtCore, QtGui, QtWidgets

    app = ui.application()
    QtGui.QGuiApplication.setFont(QtGui.QFont("DejaVu Sans", 9))
    win = ui.launch(home=home, runtime="process")
    win.ask_on_close = False

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents(QtCore.QEventLoop.AllEvents, 50)
            time.sleep(0.01)

    def shot(widget, name):
        pump(0.3)
        pm = widget.grab()
        pm.save(str(out_dir / f"{name}.png"))
        print("wrote", out_dir / f"{name}.png", pm.width(), "x", pm.height())

    # -- welcome
    win.show_welcome()
    win.resize(1360, 860)
    pump(0.8)
    shot(win, "welcome")

    # -- main window: the running execution selected (its output live)
    win.open_lab(lab)
    pump(1.5)
    win.select_execution(c.id, show_code=False)
    pump(2.5)
    win.console.flush_now()
    shot(win, "main-window")

    # -- the failed one, code of its snapshot (read-only with the banner)
    win.select_execution(b.id, show_code=True)
    pump(0.8)
    win.console.flush_now()
    shot(win, "code-snapshot")

    # -- a failed execution: the failure banner above its console, the traceback's links
    win.select_execution(b.id, show_code=False)
    pump(0.8)
    win.console.flush_now()
    shot(win, "failure-banner")

    # -- a narrow window (1024x700) with a 200-character name and a 2,000-character reason
    from mldesk.engine.values import Execution as _Execution

    long_name = "hyperparameter-sweep-" + "-".join(f"lr{i}e-4-batch{2 ** i}" for i in range(12))
    long_name = (long_name + "-x" * 100)[:200]
    long_reason = ("image registry.example.org/team/" + "very-long-image-name-" * 12 + ":latest is not on this "
                   "machine and could not be pulled: " + " ".join(["manifest unknown"] * 200))[:2000]
    eng3 = win.engine
    now = time.time()
    narrow = _Execution(id="20261129-235959-nrrow", name=long_name, lab=str(lab.resolve()), host="local",
                        runtime="docker", image="x", hardware="cpu", state="failed", exit_code=None,
                        reason=long_reason, created_at=now, started_at=now, finished_at=now + 3,
                        snapshot=eng3.get(a.id).snapshot)
    eng3.store.insert_execution(narrow)
    pump(1.0)
    win.resize(1024, 700)
    pump(0.5)
    win.select_execution(narrow.id, show_code=False)
    pump(0.8)
    shot(win, "narrow-window")
    win.resize(1360, 860)
    pump(0.3)

    # -- the big log: head, banner, tail
    eng2 = win.engine
    big = eng2.run(big_lab, runtime="process", name="200k lines")
    end = time.time() + 60
    while time.time() < end and not eng2.get(big.id).final:
        pump(0.1)
    win.open_lab(big_lab)
    pump(0.8)
    win.select_execution(big.id, show_code=False)
    pump(0.5)
    win.console.flush_now()
    bar = win.console.text_edit().verticalScrollBar()
    # show the banner in the middle of the view
    doc = win.console.text_edit().document()
    block = doc.findBlockByNumber(1003)
    cursor = QtGui.QTextCursor(block)
    win.console.set_following(False)
    win.console.text_edit().setTextCursor(cursor)
    win.console.text_edit().centerCursor()
    pump(0.3)
    shot(win, "console-banner")
    win.console.set_following(True)

    # -- live following past the scrollback cap: the first lines stay, the middle goes
    win.console.set_max_lines(20_000)
    live = eng2.run(big_lab, runtime="process", name="200k lines, live")
    pump(0.8)
    win.select_execution(live.id, show_code=False)
    end = time.time() + 60
    while time.time() < end and not eng2.get(live.id).final:
        pump(0.1)
    pump(1.0)
    win.console.flush_now()
    pump(0.3)
    shot(win, "console-following")

    # -- back to the demo lab: Outputs with the loss image
    win.open_lab(lab)
    pump(0.8)
    win.select_execution(a.id, show_code=False)
    win.bottom_tabs.setCurrentWidget(win.outputs_panel)
    pump(0.3)
    win.outputs_panel.select("loss.png")
    pump(0.5)
    shot(win, "outputs-panel")
    shot(win.outputs_panel, "outputs-panel-closeup")

    # -- Inputs panel
    win.show_lab_files()
    win.bottom_tabs.setCurrentWidget(win.inputs_panel)
    win.inputs_panel.set_progress({"mnist.npz": {"state": "downloading", "done": 6_300_000,
                                                  "total": 11_490_434, "rate": 2_400_000, "eta": 2.2}})
    pump(0.4)
    shot(win, "inputs-panel")
    win.inputs_panel.set_progress({})

    # -- settings
    dialog = ui.mainwindow.SettingsDialog(win.engine, win)
    dialog.resize(680, 500)
    dialog.show()
    pump(0.5)
    shot(dialog, "settings")
    dialog.tabs.setCurrentIndex(1)
    shot(dialog, "settings-executions")
    dialog.close()

    # -- remove with undo
    win.bottom_tabs.setCurrentIndex(0)
    win.execution_list.setCurrentIndex(win.model.index_of(b.id))
    pump(0.2)
    win.remove(win.selected())
    win.select_execution(c.id, show_code=False)
    pump(0.6)
    win.console.flush_now()
    shot(win, "undo-bar")
    win.undo_bar.button.click()
    pump(0.3)

    # -- dark theme
    from mldesk.ui.settings import apply_theme

    apply_theme("dark")
    win.select_execution(c.id, show_code=False)
    pump(1.0)
    win.console.flush_now()
    shot(win, "main-window-dark")
    apply_theme("system")

    # -- about
    box = QtWidgets.QMessageBox(win)
    box.setWindowTitle("About mldesk")
    box.setTextFormat(QtCore.Qt.RichText)
    from mldesk.ui.settings import about_text

    box.setText(about_text())
    box.show()
    pump(0.4)
    shot(box, "about")
    box.close()

    # stop what we started
    for ex in win.engine.store.list():
        if ex.active:
            win.engine.stop(ex.id)
    end = time.time() + 30
    while time.time() < end and any(e.active for e in win.engine.store.list()):
        pump(0.1)
    win.close()
    pump(0.2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "resources" / "screenshots")
