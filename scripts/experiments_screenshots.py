"""Screenshots of the experiments in the real window: the Metrics tab of a running
execution (with its System group), Compare of four executions, Compare code, Run with…,
and the sidebar with two sweeps grouped under their headers (one expanded, one collapsed).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/experiments_screenshots.py [OUT_DIR]

Runs real executions (process runtime) in a temporary MLDESK_HOME, writes
OUT_DIR/window-{metrics,compare,diff,run-with,sidebar}.png (default
resources/screenshots) and stops what it started.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

MAIN_PY = r'''
"""Train a small classifier (demo: simulated numbers, real CPU work)."""
import argparse, math, random, time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()
rng = random.Random(int(args.lr * 1000) + args.batch_size)
print(f"training with learning rate {args.lr} for {args.epochs} epochs, batches of {args.batch_size}")
for epoch in range(1, args.epochs + 1):
    end = time.time() + args.delay
    x = 0.0
    while time.time() < end:  # keep a core busy, as training would
        x += math.sqrt(epoch + x % 7)
    k = 0.9 * args.lr * 10
    loss = 2.3 * math.exp(-k * epoch / 6) + 0.08 + rng.gauss(0, 0.02)
    acc = min(0.995, 1 - loss / 2.6 + rng.gauss(0, 0.005))
    val = loss * 1.1 + 0.03 + rng.gauss(0, 0.02)
    print(f"epoch {epoch}/{args.epochs} train/loss: {loss:.4f} train/acc: {acc:.4f}", flush=True)
    print(f"epoch {epoch} val/loss={val:.4f} val/acc={1 - val / 2.5:.4f}", flush=True)
print("done")
'''

ML_YAML = """\
hardwareType: cpu
parameters:
  - pass-as: '--lr=0.05'
  - pass-as: '--epochs=30'
  - pass-as: '--batch-size=64'
  - pass-as: '--delay=0.02'
metrics:
  primary: val/loss
  goal: min
"""


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mldesk-xshots-"))
    home = tmp / "home"
    os.environ["MLDESK_HOME"] = str(home)
    lab = tmp / "labs" / "classifier"
    lab.mkdir(parents=True)
    (lab / "main.py").write_text(MAIN_PY.lstrip())
    (lab / "ml.yaml").write_text(ML_YAML)
    (lab / "model.py").write_text("LAYERS = [784, 256, 10]\nDROPOUT = 0.0\n")

    from mldesk.engine.facade import Engine

    eng = Engine(home)
    eng.store.touch_recent_lab(str(lab.resolve()))

    def wait_final(ids, timeout=120):
        end = time.time() + timeout
        while time.time() < end and not all(eng.get(i).final for i in ids):
            time.sleep(0.05)

    base = eng.run(lab, runtime="process", name="baseline")
    wait_final([base.id])
    (lab / "model.py").write_text("LAYERS = [784, 512, 256, 10]\nDROPOUT = 0.2\n")
    (lab / "main.py").write_text(MAIN_PY.lstrip().replace("default=64", "default=128"))
    tuned = eng.run(lab, runtime="process", overrides={"lr": "0.08"})
    wait_final([tuned.id])
    earlier, earlier_trials = eng.run_sweep(lab, ["batch-size=[32,128]"], runtime="process")
    wait_final([t.id for t in earlier_trials])
    sweep, trials = eng.run_sweep(lab, ["lr=[0.02,0.05,0.08,0.12]"], runtime="process")
    wait_final([t.id for t in trials])
    live = eng.run(lab, runtime="process", overrides={"epochs": "400", "delay": "0.4", "lr": "0.03"})
    eng.close()

    from mldesk import ui
    from mldesk.ui.qt import QtCore, QtGui

    app = ui.application()
    QtGui.QGuiApplication.setFont(QtGui.QFont("DejaVu Sans", 9))
    win = ui.launch(lab, home=home, runtime="process")
    win.ask_on_close = False
    win.resize(1440, 1000)
    win.show()

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents(QtCore.QEventLoop.AllEvents, 50)
            time.sleep(0.01)

    def shot(widget, name, height=None):
        pump(0.4)
        pm = widget.grab() if height is None else widget.grab(QtCore.QRect(0, 0, widget.width(), height))
        pm.save(str(out_dir / f"{name}.png"))
        print("wrote", out_dir / f"{name}.png", pm.width(), "x", pm.height())

    pump(2.0)
    # -- the Metrics tab of the running execution, its System group filling in
    win.select_execution(live.id, show_code=False)
    win.bottom_tabs.setCurrentWidget(win.metrics_tab.page)
    win.center_split.setSizes([150, 850])
    pump(9.0)
    shot(win, "window-metrics")

    # -- the sidebar with several selected, the row figures
    def select(ids):
        sel = QtCore.QItemSelection()
        for i in ids:
            idx = win.model.index_of(i)
            sel.select(idx, idx)
        win.execution_list.selectionModel().select(sel, QtCore.QItemSelectionModel.ClearAndSelect)

    # the sweeps grouped: the newer one expanded (its header selected), the earlier one collapsed
    win.execution_list.set_sweep_collapsed(earlier, True)
    win.execution_list.select_only(win.model.header_index(sweep))
    pump(0.5)
    shot(win.right_pane, "window-sidebar", 700)

    four = [base.id, tuned.id, trials[0].id, trials[-1].id]
    select(four)

    # -- Compare
    win.act_compare.trigger()
    end = time.time() + 30
    while time.time() < end and not any(getattr(w, "loaded", False) for w in win.experiments.windows):
        pump(0.1)
    cw = win.experiments.windows[-1]
    cw.resize(1300, 860)
    pump(1.0)
    shot(cw, "window-compare")
    cw.close()

    # -- Compare code: baseline -> tuned
    select([base.id, tuned.id])
    pump(0.2)
    win.act_compare_code.trigger()
    end = time.time() + 30
    while time.time() < end and not win.experiments.windows:
        pump(0.1)
    dw = win.experiments.windows[-1]
    dw.resize(1200, 720)
    dw.view.select("main.py")
    pump(0.8)
    shot(dw, "window-diff")
    dw.close()

    # -- Run with…
    win.select_execution(live.id, show_code=False)
    dialog = win.experiments.run_with()
    if dialog is not None:
        dialog.set_sweep(True)
        dialog.set_value("lr", "0.01, 0.03, 0.1")
        dialog.set_value("batch-size", "64, 128")
        pump(0.5)
        shot(dialog, "window-run-with")
        dialog.reject()

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
