"""Metrics from printed output (mldesk.core.metrics): patterns, scanner, storage."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mldesk.agent import logstore
from mldesk.core import metrics
from mldesk.core.metrics import MetricsConfig, Scanner, parse_line, read_metrics, summarize


def pairs(line: bytes, config: MetricsConfig | None = None):
    """{key: value} of one line (after the scanner's own cleaning)."""
    s = Scanner(config)
    return {k: v for k, _step, v, _ts in s.feed(1, line + b"\n", 0.0)}


def points(data: bytes, config: MetricsConfig | None = None, stream: int = 1):
    s = Scanner(config)
    out = s.feed(stream, data, 0.0) + s.flush(0.0)
    return [(k, step, v) for k, step, v, _ in out]


# -- a corpus of real output styles ---------------------------------------------------
CORPUS = [
    # Guild AI's defaults / its examples
    (b"loss: 0.513", {"loss": 0.513}),
    (b"accuracy: 0.87", {"accuracy": 0.87}),
    (b"loss: 0.5 (step 10)", {"loss": 0.5}),
    (b"x: 1.0\r", {"x": 1.0}),
    # Keras 2 (piped: non-dynamic) and Keras 3 (with ANSI)
    (b"32/32 [==============================] - 1s 5ms/step - loss: 0.4123 - accuracy: 0.8125",
     {"loss": 0.4123, "accuracy": 0.8125}),
    (b"32/32 - 1s - loss: 0.6931 - accuracy: 0.5000 - val_loss: 0.6920 - val_accuracy: 0.5312 - 1s/epoch - 20ms/step",
     {"loss": 0.6931, "accuracy": 0.5, "val_loss": 0.692, "val_accuracy": 0.5312}),
    (b"\x1b[1m32/32\x1b[0m \x1b[32m\xe2\x94\x81\xe2\x94\x81\x1b[0m\x1b[37m\x1b[0m \x1b[1m0s\x1b[0m 2ms/step - accuracy: 0.9062 - loss: 0.2510",
     {"accuracy": 0.9062, "loss": 0.251}),
    # PyTorch Lightning progress bar (tqdm with postfix)
    (b"Epoch 2: 100%|\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88| 32/32 [00:01<00:00, 25.00it/s, v_num=0, train_loss=0.53, val_acc=0.81]",
     {"v_num": 0.0, "train_loss": 0.53, "val_acc": 0.81}),
    # tqdm with set_postfix
    (b"100%|##########| 50/50 [00:02<00:00, 21.37it/s, loss=0.0312, lr=1e-3]", {"loss": 0.0312, "lr": 0.001}),
    # HuggingFace Trainer dicts
    (b"{'loss': 0.6931, 'grad_norm': 1.2345, 'learning_rate': 5e-05, 'epoch': 0.5}",
     {"loss": 0.6931, "grad_norm": 1.2345, "learning_rate": 5e-05}),
    (b"{'eval_loss': 0.41, 'eval_runtime': 1.2, 'eval_samples_per_second': 83.3, 'epoch': 1.0}",
     {"eval_loss": 0.41, "eval_runtime": 1.2, "eval_samples_per_second": 83.3}),
    # JSON lines
    (b'{"train/loss": 0.25, "val/acc": 0.75, "step": 100}', {"train/loss": 0.25, "val/acc": 0.75}),
    # plain prints
    (b"epoch 3 loss=0.51 acc=0.83", {"loss": 0.51, "acc": 0.83}),
    (b"train/loss=0.2 val.acc = 0.9", {"train/loss": 0.2, "val.acc": 0.9}),
    (b"Final test accuracy: 0.95.", {"accuracy": 0.95}),
    (b"INFO:__main__:loss: 0.5", {"loss": 0.5}),
    (b"loss: nan grad: inf neg: -Infinity", {"loss": math.nan, "grad": math.inf, "neg": -math.inf}),
    (b"Namespace(lr=0.1, batch_size=32)", {"lr": 0.1, "batch_size": 32.0}),
    # never metrics
    (b"12:30:01 started", {}),
    (b"fetching http://host:8080/data.csv", {}),
    (b"device: cuda:0", {}),
    (b"progress: 100%", {}),
    (b"acc=100%", {}),
    (b"time: 12:30:01", {}),
    (b"loss:0.5", {}),
    (b"loss:: 0.5", {}),
    (b"version: 1.2.3", {}),
    (b"eta: 0s", {}),
    (b"--lr=0.1", {}),
    (b"Epoch 1/10", {}),
    (b"step: 3", {}),
    (b"hello world", {}),
]


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


@pytest.mark.parametrize("line,expected", CORPUS, ids=[c[0][:40].decode("ascii", "replace") for c in CORPUS])
def test_corpus(line, expected):
    got = pairs(line)
    assert _same(got, expected), (line, got)


def test_steps_explicit_and_counted():
    out = points(
        b"loss: 0.9\n"
        b"loss: 0.8\n"
        b"loss: 0.7 (step 10)\n"
        b"Epoch 5: 100%|##| 3/3 [00:00<00:00, train_loss=0.5]\n"
        b"epoch 1 step 20 loss=0.4\n"
        b"{'loss': 0.3, 'epoch': 0.25}\n"
        b"ITERATION 7 loss=0.2\n"
    )
    assert out == [("loss", 1, 0.9), ("loss", 2, 0.8), ("loss", 10, 0.7), ("train_loss", 5, 0.5),
                   ("loss", 20, 0.4), ("loss", 0.25, 0.3), ("loss", 7, 0.2)]


def test_step_only_line_sets_following_steps():
    # Guild's "step: N" lines, Keras' "Epoch N/M" line before its progress line
    out = points(b"step: 5\nloss: 0.5\nacc: 0.9\nEpoch 7/10\n32/32 - loss: 0.4\n")
    assert out == [("loss", 5, 0.5), ("acc", 5, 0.9), ("loss", 7, 0.4)]


def test_step_words_are_not_metrics():
    assert pairs(b"step=3 epoch=2 Iteration: 4 global_step=9 iter=1 loss=0.1") == {"loss": 0.1}


def test_a_key_counts_once_per_line():
    assert points(b"loss=0.5 loss=0.4\n") == [("loss", 1, 0.5)]


def test_carriage_return_lines_count_once_final_state():
    # a tqdm bar redrawn four times, then a newline
    data = b"".join(b"\r%d%%|#| %d/4 [00:0%d, loss=0.%d]" % (i * 25, i, i, 9 - i) for i in range(1, 5)) + b"\n"
    assert points(data) == [("loss", 1, 0.5)]
    # cleared with spaces (leave=False): nothing
    assert points(b"\rloss=0.5\r          \r\n") == []
    # Windows line ends
    assert points(b"loss: 0.5\r\nloss: 0.4\r\n") == [("loss", 1, 0.5), ("loss", 2, 0.4)]


def test_each_stream_has_its_own_partial_line():
    s = Scanner()
    out = s.feed(2, b"\r50%|#| [loss=0.9", 1.0)
    out += s.feed(1, b"acc: 0.7\n", 2.0)  # stdout in between
    out += s.feed(2, b"]\r100%|#| [loss=0.8]\n", 3.0)
    assert out == [("acc", 1, 0.7, 2.0), ("loss", 1, 0.8, 3.0)]


def test_mldesk_stream_is_never_scanned():
    s = Scanner()
    assert s.feed(logstore.MLDESK, b"running: python main.py --lr=0.1 lr=0.5\n", 0.0) == []


def test_lines_split_across_records():
    s = Scanner()
    out = []
    for chunk in (b"lo", b"ss: 0.", b"5\nacc", b"=0.25", b"\n"):
        out += s.feed(1, chunk, 0.0)
    assert [(k, v) for k, _, v, _ in out] == [("loss", 0.5), ("acc", 0.25)]


def test_huge_lines_are_skipped_and_do_not_stall():
    big = b"x" * (metrics.MAX_LINE + 10)
    s = Scanner()
    out = s.feed(1, big[: metrics.MAX_LINE // 2], 0.0)
    out += s.feed(1, big[metrics.MAX_LINE // 2 :] + b" loss: 0.5\nacc: 0.5\n", 0.0)
    assert [(k, v) for k, _, v, _ in out] == [("acc", 0.5)]
    for line in (b"a " * 100_000, b"a:" * 100_000, b"a: " * 70_000, b"a=" * 100_000, b"1" * 200_000,
                 b"'a'" * 70_000, b"step " * 40_000, b"\x1b[" * 100_000, b"a\r" * 100_000):
        parse_line(line)  # linear: a quadratic pattern would take minutes here
    assert len(pairs(b"loss: 0.5 " * 20_000)) == 1


def test_non_utf8_and_ansi():
    assert pairs(b"\xff\xfe loss: 0.5 \xc3\x28 acc=0.25") == {"loss": 0.5, "acc": 0.25}
    assert pairs(b"\x1b[31mloss\x1b[0m: \x1b[1m0.5\x1b[0m") == {"loss": 0.5}
    assert pairs(b"\x1b]0;title\x07val/acc=0.5") == {"val/acc": 0.5}


# -- user configuration ------------------------------------------------------------------
def test_user_patterns_replace_and_ignore():
    cfg = MetricsConfig(patterns=((r"accuracy is (?P<value>\S+)", "acc"), (r"(?P<key>\w+) -> (?P<value>[\d.]+)", None)),
                        ignore=("v_*",))
    assert pairs(b"accuracy is 0.75 and loss=0.5 v_num=1", cfg) == {"acc": 0.75, "loss": 0.5}
    assert pairs(b"f1 -> 0.25", cfg) == {"f1": 0.25}
    only = MetricsConfig(patterns=((r"accuracy is (?P<value>\S+)", "acc"),), replace_defaults=True)
    assert pairs(b"accuracy is 0.75 and loss=0.5", only) == {"acc": 0.75}
    stepped = MetricsConfig(patterns=((r"it (?P<step>\d+) (?P<key>\w+)=(?P<value>\S+)", None),), replace_defaults=True)
    assert points(b"it 40 loss=0.5\n", stepped) == [("loss", 40, 0.5)]


def test_config_round_trip_and_validation():
    cfg = MetricsConfig(patterns=(("(?P<key>a)(?P<value>1)", None),), ignore=("x",), primary="val/acc", goal="max")
    assert MetricsConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert not cfg.lower_is_better and MetricsConfig(primary="val_loss").lower_is_better
    with pytest.raises(metrics.MetricsConfigError, match="value"):
        metrics.compile_pattern("(?P<key>a)", None)
    with pytest.raises(metrics.MetricsConfigError, match="key"):
        metrics.compile_pattern("(?P<value>a)", None)
    with pytest.raises(metrics.MetricsConfigError, match="regular expression"):
        metrics.compile_pattern("(", "k")


# -- hypothesis -----------------------------------------------------------------------
KEYS = st.from_regex(r"\A[_a-zA-Z][a-zA-Z0-9_/.\-]{0,12}\Z").filter(lambda k: k.lower() not in metrics.STEP_WORDS)
VALUES = st.floats(allow_nan=True, allow_infinity=True, width=64)
SEPS = st.sampled_from([" - ", ", ", " ", " | ", "; ", "  "])


def fmt(v: float) -> str:
    return repr(v) if not math.isnan(v) else "nan"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_never_a_traceback(data):
    s = Scanner()
    out = s.feed(1, data, 0.0) + s.feed(2, data, 0.0) + s.flush(0.0)
    for key, step, value, _ in out:
        assert isinstance(key, str) and isinstance(value, float)
        assert re.fullmatch(r"[_a-zA-Z][!-~]*", key) and ":" not in key


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES, st.sampled_from(["{k}: {v}", "{k}={v}", "'{k}': {v}", "{k} = {v}"])),
                min_size=1, max_size=5, unique_by=lambda t: t[0]), SEPS, st.text(alphabet="xyz ", max_size=5))
def test_printed_pairs_come_back_exactly(items, sep, prefix):
    line = (prefix + " " if prefix.strip() else "") + sep.join(f.format(k=k, v=fmt(v)) for k, v, f in items)
    got = pairs(line.encode())
    want = {k: v for k, v, _ in items}
    assert _same(got, want), (line, got)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("ab:=1. \t,/%'\"()[]{}|-e")), max_size=60))
def test_never_a_wrong_key(text):
    """Every key found occurs in the line right before its separator and value."""
    for key, value in pairs(text.encode()).items():
        assert re.search(r"(?:^|[\s\[({,;|:])['\"]?" + re.escape(key) + r"['\"]?[ \t]*[:=]", text), (text, key)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_chunking_does_not_matter(data, cuts):
    whole = points(data)
    s = Scanner()
    got = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        got += s.feed(1, data[prev:c], 0.0)
        prev = max(prev, c)
    got += s.flush(0.0)
    assert [(k, st_, v if not math.isnan(v) else "nan") for k, st_, v, _ in got] == \
        [(k, st_, v if not math.isnan(v) else "nan") for k, st_, v in whole]



_MIXED_LINES = [b"step 3", b"Epoch 7/10", b"hello world", b"iter 12 of 40", b"loss: 0.5", b"acc=0.9",
                b"step 4 loss 0.25", b"epoch 2 val_loss: 0.1", b"", b"10%\rstep 9", b"\x1b[1mstep 11\x1b[0m",
                b"x" * (metrics.MAX_LINE + 5), b"global_step 99 is done", b"{'loss': 0.3}"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_MIXED_LINES), max_size=40), st.lists(st.integers(0, 2000), max_size=6))
def test_plain_lines_looked_at_lazily_give_what_each_line_in_turn_gives(lines, cuts):
    """feed() skips the step search of plain lines (no ':' or '=') except the last with a
    step before a pair or the end: the points and the sticky step are exactly those of
    looking at every line in turn (``_line``), however the data is cut."""
    data = b"".join(line + b"\n" for line in lines)
    ref = Scanner()
    want: list = []
    for line in lines:
        if line and len(line) <= metrics.MAX_LINE:
            ref._line(line, 0.0, want)
    s = Scanner()
    got: list = []
    prev = 0
    for c in sorted(set(min(c, len(data)) for c in cuts)) + [len(data)]:
        got += s.feed(1, data[prev:c], 0.0)
        prev = c
    got += s.flush(0.0)
    assert got == want
    assert s.sticky == ref.sticky


# -- storage ----------------------------------------------------------------------------
def write_log(exec_dir: Path, chunks) -> None:
    with logstore.LogWriter(exec_dir / "log.bin") as w:
        for stream, data in chunks:
            w.write(stream, data, ts=1000.0)


def test_read_metrics_scans_once_then_resumes(tmp_path):
    write_log(tmp_path, [(1, b"loss: 0.9\nacc"), (3, b"running: x=1\n"), (2, b"\rval=0.1\rval=0.2"), (1, b"=0.5\n")])
    got = read_metrics(tmp_path)
    assert got == {"loss": [(1, 0.9, 1000.0)], "acc": [(1, 0.5, 1000.0)]}
    size = os.path.getsize(tmp_path / "log.bin")
    cursor = json.loads((tmp_path / metrics.CURSOR_FILE).read_text())
    assert cursor["offset"] == size
    # more log: only the new part is read (the old one is not scanned again)
    write_log(tmp_path, [(1, b"loss: 0.8\n"), (2, b"\n")])
    got = read_metrics(tmp_path)
    assert got["loss"] == [(1, 0.9, 1000.0), (2, 0.8, 1000.0)] and got["val"] == [(1, 0.2, 1000.0)]
    # the partial last line counts once the log is final
    write_log(tmp_path, [(1, b"last: 1")])
    assert "last" not in read_metrics(tmp_path)
    assert read_metrics(tmp_path, final=True)["last"] == [(1, 1.0, pytest.approx(1.0, abs=1e12))]
    assert read_metrics(tmp_path, final=True)["last"] == read_metrics(tmp_path)["last"]
    assert len(read_metrics(tmp_path)["loss"]) == 2


def test_a_scanner_that_died_between_values_and_cursor(tmp_path):
    write_log(tmp_path, [(1, b"loss: 0.9\n")])
    read_metrics(tmp_path)
    with open(tmp_path / metrics.METRICS_FILE, "ab") as f:  # values whose cursor was never written
        f.write(b'["loss",2,0.8,1000.0]\n["lo')
    write_log(tmp_path, [(1, b"loss: 0.7\n")])
    assert read_metrics(tmp_path) == {"loss": [(1, 0.9, 1000.0), (2, 0.7, 1000.0)]}


def test_summary_and_nan_json(tmp_path):
    write_log(tmp_path, [(1, b"loss: 0.9\nloss: nan\nloss: 0.3\nloss: inf\n")])
    got = read_metrics(tmp_path)
    assert summarize(got["loss"]) == {"last": math.inf, "min": 0.3, "max": math.inf, "count": 4}
    assert summarize([]) == {"last": None, "min": None, "max": None, "count": 0}


def test_scanning_is_incremental(tmp_path, monkeypatch):
    """Each log byte is read once, however often metrics are asked for."""
    read = []
    orig = logstore.LogReader.read_from

    def spy(self, offset, max_bytes=4 << 20):
        records, nxt = orig(self, offset, max_bytes)
        read.append(nxt - offset)
        return records, nxt

    monkeypatch.setattr(logstore.LogReader, "read_from", spy)
    total = 0
    for i in range(5):
        write_log(tmp_path, [(1, b"loss: %d\n" % i * 100)])
        read_metrics(tmp_path)
    total = os.path.getsize(tmp_path / "log.bin")
    assert sum(read) == total
    assert len(read_metrics(tmp_path)["loss"]) == 500


def test_follow_process_keeps_up_and_finishes(tmp_path):
    """The supervisor's child: follows a growing log, ends at EOF of its pipe, and with
    'F' also counts the partial last line."""
    env = dict(os.environ, PYTHONPATH=str(Path(metrics.__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "mldesk.core.metrics", "follow", str(tmp_path)],
                            stdin=subprocess.PIPE, env=env)
    proc.stdin.write(json.dumps(MetricsConfig(ignore=("skip",)).to_dict()).encode() + b"\n")
    proc.stdin.flush()
    with logstore.LogWriter(tmp_path / "log.bin") as w:
        for i in range(1000):
            w.write(1, b"step %d loss=%d skip=1\n" % (i, i))
        w.write(2, b"tail: 7")
    proc.stdin.write(b"F")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    pts = metrics.read_points(tmp_path)
    assert [p[:3] for p in pts] == [["loss", i, float(i)] for i in range(1000)] + [["tail", 1, 7.0]]


def test_read_points_from_an_offset(tmp_path):
    write_log(tmp_path, [(1, b"loss: 1\nacc: 2\n")])
    metrics.update(tmp_path)
    pts, off = metrics.read_points_from(tmp_path, 0)
    assert [p[0] for p in pts] == ["loss", "acc"]
    assert metrics.read_points_from(tmp_path, off) == ([], off)
    write_log(tmp_path, [(1, b"loss: 3\n")])
    metrics.update(tmp_path)
    pts, off2 = metrics.read_points_from(tmp_path, off)
    assert pts == [["loss", 2, 3.0, 1000.0]] and off2 > off
    with open(tmp_path / metrics.METRICS_FILE, "ab") as f:
        f.write(b'["half"')  # a line being written is not returned yet
    assert metrics.read_points_from(tmp_path, off2) == ([], off2)
    assert metrics.read_points_from(tmp_path, 10 ** 9)[0][0][0] == "loss"  # past the end: start over


@pytest.mark.parametrize("line,text", [
    (b"Epoch 3/10", "epoch 3/10"),
    (b"Epoch 2:  56%|#####     | 18/32 [00:01<00:00, loss=0.5]", "epoch 2 \xb7 56%"),
    (b"18/32 [=====>....] - ETA: 1s - loss: 0.5", "56%"),
    (b"\r 10%|#| 1/10\r 20%|#| 2/10", "20%"),
    (b"\x1b[32mstep 300/1000\x1b[0m loss=0.2", "step 300/1000"),
    (b"iter 500: loss 2.44", "iter 500"),
    (b"loss: 0.5", None),
    (b"version 1.2.3", None),
])
def test_progress_text(line, text):
    assert metrics.progress_text(line) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_progress_text_never_fails(data):
    metrics.progress_text(data)
