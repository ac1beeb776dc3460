"""Screenshots of the experiment widgets (Metrics, Compare, Diff, Run with…) on sample data.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/chart_screenshots.py [OUT_DIR]

Unlike scripts/ui_screenshots.py this runs no executions: each widget is fed the
data the core hands it (issue 13's data contract) and grabbed to
OUT_DIR/{metrics,compare,diff,run-with}.png (default resources/screenshots).
"""

from __future__ import annotations

import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

T0 = 1_764_400_000.0  # a fixed wall time, so the pictures do not change from run to run


def curve(rng: random.Random, lr: float, steps: int, noise: float = 0.03, floor: float = 0.08):
    out = []
    for s in range(1, steps + 1):
        base = 2.3 * math.exp(-s * lr / 500) + floor
        out.append((s, max(0.01, base + rng.gauss(0, noise * base)), T0 + s * 0.8))
    return out


def metrics_sample(rng: random.Random, lr: float = 1.0, steps: int = 3000) -> dict:
    loss = curve(rng, lr, steps)
    acc = [(s, min(0.995, 1 - v / 2.6 + rng.gauss(0, 0.004)), t) for s, v, t in loss]
    val_loss = [(s, v * 1.08 + 0.02, t) for s, v, t in loss[99::100]]
    val_acc = [(s, 1 - v / 2.5, t) for s, v, t in val_loss]
    lr_sched = [(s, 0.01 * 0.5 ** (s // 1000), t) for s, _v, t in loss[::10]]
    return {"train/loss": loss, "train/acc": acc, "val/loss": val_loss, "val/acc": val_acc, "lr": lr_sched}


def resources_sample(rng: random.Random) -> dict:
    ts = [T0 + i * 5 for i in range(480)]
    return {
        "cpu_percent": [[t, 80 + 8 * math.sin(i / 25) + rng.gauss(0, 1.5)] for i, t in enumerate(ts)],
        "rss_bytes": [[t, 2.1e9 + 4e5 * i] for i, t in enumerate(ts)],
        "gpu": {g: {"util_percent": [[t, max(0, min(100, 88 - 14 * int(g) + 6 * math.sin(i / 18 + int(g)) + rng.gauss(0, 1)))]
                                     for i, t in enumerate(ts)],
                    "mem_used_bytes": [[t, (14.2 - 2 * int(g)) * 2**30] for t in ts]} for g in ("0", "1")},
    }


def pump(app, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def shot_metrics(app, out: Path) -> None:
    from mldesk.ui.charts import MetricsView

    rng = random.Random(13)
    view = MetricsView()
    view.resize(980, 1240)
    view.show()
    view.set_metrics(metrics_sample(rng))
    view.set_primary(("val/loss", "min"))
    view.set_resources(resources_sample(rng))
    view.set_smoothing(0.6)
    view.flush()
    pump(app)
    view.chart("train/loss").show_readout_at(1200)
    pump(app, 0.1)
    view.grab().save(str(out / "metrics.png"))
    view.close()


def _png(path: Path, hue: int, label: str, sharp: float) -> None:
    from mldesk.ui.qt import QtCore, QtGui, Qt

    path.parent.mkdir(parents=True, exist_ok=True)
    img = QtGui.QImage(220, 160, QtGui.QImage.Format_RGB32)
    img.fill(QtGui.QColor("white"))
    p = QtGui.QPainter(img)
    p.setRenderHint(QtGui.QPainter.Antialiasing)
    for i in range(10):  # a confusion-matrix-like grid
        for j in range(10):
            v = sharp if i == j else (1 - sharp) / 9 * (1 + ((i * 7 + j * 3) % 5) / 2)
            p.fillRect(QtCore.QRectF(10 + j * 14, 10 + i * 14, 13, 13), QtGui.QColor.fromHsvF(hue / 360, min(1, v * 1.2), 0.95 - 0.5 * v))
    p.setPen(QtGui.QColor("#333"))
    p.drawText(QtCore.QRectF(155, 10, 60, 140), Qt.AlignLeft | Qt.AlignVCenter | Qt.TextWordWrap, label)
    p.end()
    img.save(str(path))


def compare_sample(tmp: Path, runs: int = 4):
    rng = random.Random(7)
    configs = [("0.1", "10", "finished", 1.6), ("0.01", "10", "finished", 1.0), ("0.001", "20", "failed", 0.35),
               ("0.01", "20", "running", 0.9)]
    rows, metrics, outputs = [], {}, {}
    for i, (lr, epochs, state, speed) in enumerate(configs[:runs]):
        ex = f"ex{i + 1}"
        steps = 1500 if state == "running" else 2000
        loss = curve(rng, speed, steps, floor=0.08 + 0.05 * i)
        acc = [(s, 1 - v / 2.6, t) for s, v, t in loss[49::50]]
        m = {"loss": loss, "val/acc": acc}
        metrics[ex] = m
        summ = {k: {"last": p[-1][1], "min": min(x[1] for x in p), "max": max(x[1] for x in p), "count": len(p)}
                for k, p in m.items()}
        rows.append({"id": ex, "name": f"mnist-cnn lr={lr} epochs={epochs}", "state": state,
                     "host": ["local", "local", "gpu-box", "gpu-box"][i], "runtime": ["docker", "docker", "ssh", "ssh"][i],
                     "duration": [612.0, 598.0, 131.0, 420.0][i], "params": {"lr": lr, "epochs": epochs, "batch-size": "64"},
                     "metrics": summ})
        _png(tmp / ex / "plots" / "confusion.png", [215, 25, 140, 330][i], f"lr={lr}", [0.9, 0.8, 0.45, 0.75][i])
        outputs[ex] = tmp / ex
    return rows, metrics, outputs


def shot_compare(app, out: Path) -> None:
    from mldesk.ui.compare import CompareView

    with tempfile.TemporaryDirectory() as tmp:
        rows, metrics, outputs = compare_sample(Path(tmp))
        view = CompareView()
        view.resize(1280, 620)
        view.show()
        view.set_executions(rows, metrics, primary=("loss", "min"), outputs=outputs)
        pump(app)
        view.grab().save(str(out / "compare.png"))
        view.tabs.setCurrentIndex(1)
        pump(app, 0.2)
        view.grab().save(str(out / "compare-images.png"))
        view.close()


MAIN_A = '''import argparse, math

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()


def train(epoch):
    loss = 2.3 * math.exp(-0.45 * epoch) + 0.05
    return loss


for epoch in range(1, args.epochs + 1):
    loss = train(epoch)
    print(f"epoch {epoch} loss: {loss:.4f}")
print("done")
'''
MAIN_B = MAIN_A.replace("-0.45 * epoch) + 0.05\n    return loss", "-40 * args.lr * epoch) + 0.05\n    # never below the noise floor\n    return max(loss, 0.08)").replace(
    'print(f"epoch {epoch} loss: {loss:.4f}")', 'acc = 1 - loss / 2.5\n    print(f"epoch {epoch} loss: {loss:.4f} acc={acc:.3f}")')


def shot_diff(app, out: Path) -> None:
    from mldesk.ui.diffview import DiffView

    a = {"ml.yaml": b"dockerImageId: keras_v2-0-x_python_3-1\nparameters:\n  - pass-as: --lr=0.01\n  - pass-as: --epochs=10\n",
         "main.py": MAIN_A.encode(), "README.md": b"# mnist-cnn\n", "old_plot.py": b"import matplotlib\n"}
    b = {"ml.yaml": b"dockerImageId: keras_v2-0-x_python_3-1\nparameters:\n  - pass-as: --lr=0.1\n  - pass-as: --epochs=10\n",
         "main.py": MAIN_B.encode(), "README.md": b"# mnist-cnn\n", "utils/metrics.py": b"def accuracy(loss):\n    return 1 - loss / 2.5\n"}
    view = DiffView()
    view.resize(1180, 560)
    view.show()
    view.set_trees(a, b, {"lr": "0.01", "epochs": "10", "batch-size": "64"}, {"lr": "0.1", "epochs": "10", "batch-size": "64"},
                   labels=("mnist-cnn #12", "mnist-cnn #14"))
    view.select("main.py")
    pump(app, 0.2)
    view.grab().save(str(out / "diff.png"))
    view.set_mode("side")
    pump(app, 0.2)
    view.grab().save(str(out / "diff-side.png"))
    view.close()


def shot_run_with(app, out: Path) -> None:
    from mldesk.ui.runwith import RunWithDialog

    d = RunWithDialog([("lr", "0.01"), ("epochs", "10"), ("optimizer", "adam"), ("batch-size", "64")], lab_name="mnist-cnn")
    d.show()
    d.set_sweep(True)
    d.set_value("lr", "0.1, 0.01, 0.001")
    d.set_value("epochs", "10:30:10")
    d.set_value("optimizer", "adam, sgd")
    pump(app, 0.2)
    d.grab().save(str(out / "run-with.png"))
    d.close()


def main(out: Path) -> None:
    from mldesk.ui.qt import QtWidgets

    out.mkdir(parents=True, exist_ok=True)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    shot_metrics(app, out)
    shot_compare(app, out)
    shot_diff(app, out)
    shot_run_with(app, out)
    for name in ("metrics", "compare", "compare-images", "diff", "diff-side", "run-with"):
        print(out / f"{name}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "resources" / "screenshots")
