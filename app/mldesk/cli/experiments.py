"""Experiment commands: ``metrics``, ``compare``, ``diff``, and ``run``'s overrides and
sweeps. Output shapes are fixed (other tools script against them):

- ``mldesk metrics ID --json``: ``{"loss": [[1, 0.9], [2, 0.5]], ...}`` (keys in the
  order they were first printed; nan/inf as Python's json module writes them);
  ``--csv``: ``key,step,value,time`` rows.
- ``mldesk compare ID... --json``: ``[{"id", "name", "state", "params": {flag: value},
  "metrics": {key: {"last", "min", "max", "count"}}}, ...]``.
- ``mldesk run LAB --sweep ... --detach --json``: ``{"sweep": ID, "ids": [...]}``.
"""

from __future__ import annotations

import json
import math
import sys
import time

from mldesk.cli.common import EXIT_USAGE, CliError, engine as _engine, print_table


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.6g}"
    return str(v)


# -- metrics ---------------------------------------------------------------------------
def cmd_metrics(args) -> int:
    from mldesk.engine import summarize

    engine = _engine()
    ex = engine.get(args.id)
    data = engine.metrics(ex, key=args.key)
    if args.key is not None and not data:
        known = ", ".join(engine.metrics(ex)) or "none yet"
        raise CliError(f"{ex.id} has no metric '{args.key}' (known: {known})")
    if args.json:
        print(json.dumps({k: [[step, value] for step, value, _ in pts] for k, pts in data.items()}))
        return 0
    if args.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["key", "step", "value", "time"])
        for key, pts in data.items():
            for step, value, ts in pts:
                w.writerow([key, step, repr(value), f"{ts:.3f}"])
        return 0
    if not data:
        print(f"{ex.id} has no metrics" + ("" if ex.final else " yet"))
        return 0
    rows = [("KEY", "COUNT", "LAST", "MIN", "MAX", "LAST STEP")]
    for key, pts in data.items():
        s = summarize(pts)
        rows.append((key, str(s["count"]), _num(s["last"]), _num(s["min"]), _num(s["max"]), _num(pts[-1][0])))
    print_table(rows)
    return 0


# -- compare ---------------------------------------------------------------------------
def cmd_compare(args) -> int:
    from mldesk.engine import best_rows, default_goal, table_columns, table_csv

    engine = _engine()
    refs = list(args.ids)
    if args.sweep:
        members = engine.list(sweep=engine.resolve_sweep(args.sweep))
        refs += [ex.id for ex in reversed(members)]
    if not refs:
        raise CliError("give execution ids to compare, or --sweep SWEEP_ID", EXIT_USAGE)
    rows = engine.compare(refs)
    if args.json:
        print(json.dumps([{k: row[k] for k in ("id", "name", "state", "params", "metrics")} for row in rows],
                         indent=2))
        return 0
    if args.csv:
        sys.stdout.write(table_csv(rows))
        return 0
    params, keys = table_columns(rows)
    header = ["ID", "NAME", "STATE"] + params + [f"{k} {s}" for k in keys for s in ("last", "min", "max")]
    table = [tuple(header)]
    marks: dict[tuple[int, int], bool] = {}
    col = 3 + len(params)
    for key in keys:
        primary = next((r["primary"] for r in rows if r["primary"]["key"] == key), None)
        lower = (primary["goal"] if primary and primary["goal"] else default_goal(key)) == "min"
        for j, stat in enumerate(("last", "min", "max")):
            for i in best_rows(rows, key, stat, lower):
                marks[(i, col + j)] = True
        col += 3
    for i, row in enumerate(rows):
        cells = [row["id"], row["name"], row["state"]] + [row["params"].get(p, "") for p in params]
        for key in keys:
            m = row["metrics"].get(key, {})
            cells += [_num(m.get(s)) for s in ("last", "min", "max")]
        table.append(tuple(c + ("*" if marks.get((i, n)) else "") for n, c in enumerate(cells)))
    print_table(table)
    if keys and len(rows) > 1:
        print("(* best of the column: lower is better for losses and errors, or as ml.yaml's metrics.primary says)")
    return 0


# -- diff ------------------------------------------------------------------------------
def cmd_diff(args) -> int:
    engine = _engine()
    result = engine.diff(args.a, args.b)
    want_params = args.params or not args.code
    want_code = args.code or not args.params
    if args.json:
        out = {"a": result["a"], "b": result["b"]}
        if want_params:
            out["params"] = [{"name": n, "a": a, "b": b} for n, a, b in result["params"]]
        if want_code:
            out["files"] = result["files"]
        print(json.dumps(out, indent=2))
        return 0
    if want_params:
        print(f"parameters ({result['a']} -> {result['b']}):")
        if not result["params"]:
            print("  (no differences)")
        for name, a, b in result["params"]:
            print(f"  {name}: {'(absent)' if a is None else a} -> {'(absent)' if b is None else b}")
    if want_code:
        if want_params:
            print()
        if not result["files"]:
            print("code: no differences")
        for f in result["files"]:
            if f["diff"] is None:
                print(f"Binary file {f['path']} {f['status']}")
            else:
                sys.stdout.write(f["diff"])
    return 0


# -- run with overrides / sweeps ---------------------------------------------------------------
def start_run(engine, args):
    """``mldesk run`` with ``--set``/``--sweep``: returns an exit code, or None when
    it is a plain run (the caller starts and follows it)."""
    from mldesk.engine import ParamError, parse_set

    try:
        overrides = parse_set(args.set or [])
    except ParamError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if not args.sweep:
        if args.max_trials is not None or args.random is not None:
            raise CliError("--max-trials and --random go with --sweep", EXIT_USAGE)
        return engine.run(args.lab or ".", host=args.host, runtime=args.runtime, name=args.name,
                          overrides=overrides or None, gpus=getattr(args, "gpus_value", None),
                          allow_local_inputs=getattr(args, "allow_local_inputs", False)), None
    sweep, executions = engine.run_sweep(args.lab or ".", args.sweep, host=args.host, runtime=args.runtime,
                                         name=args.name, overrides=overrides or None,
                                         max_trials=args.max_trials, random=args.random,
                                         gpus=getattr(args, "gpus_value", None),
                                         allow_local_inputs=getattr(args, "allow_local_inputs", False))
    ids = [ex.id for ex in executions]
    if args.detach:
        if args.json:
            print(json.dumps({"sweep": sweep, "ids": ids}))
        else:
            print(f"sweep {sweep}: {len(ids)} trial(s)")
            for ex in executions:
                print(f"{ex.id}  {ex.name}")
        return None, 0
    print(f"[mldesk] sweep {sweep}: {len(ids)} trial(s) started; Ctrl-C detaches, they keep running",
          file=sys.stderr, flush=True)
    for ex in executions:
        print(f"[mldesk]   {ex.id}  {ex.name}", file=sys.stderr)
    pending = set(ids)
    failed = 0
    last_check = time.monotonic()
    try:
        while pending:
            for exec_id in sorted(pending):
                ex = engine.lookup(exec_id)
                if ex is None or ex.final:
                    pending.discard(exec_id)
                    state = ex.state if ex else "removed"
                    failed += state != "finished"
                    print(f"[mldesk] {exec_id} {ex.name if ex else ''}: {state}", file=sys.stderr, flush=True)
            if pending and time.monotonic() - last_check > 2.0:
                last_check = time.monotonic()
                for exec_id in pending:
                    engine.reattach_one(exec_id)
            time.sleep(0.1)
    except KeyboardInterrupt:
        print(f"\n[mldesk] detached; sweep {sweep} keeps running (`mldesk ls --sweep {sweep}`)", file=sys.stderr)
        return None, 130
    if args.json:
        print(json.dumps({"sweep": sweep, "ids": ids}))
    else:
        print(f"sweep {sweep}: compare with `mldesk compare --sweep {sweep}`")
    return None, 1 if failed else 0


def add_run_options(s) -> None:
    s.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a parameter for this execution (its pass-as flag name), e.g. --set epochs=20")
    s.add_argument("--sweep", action="append", metavar="NAME=VALUES",
                   help="run one execution per combination: 'lr=[0.1,0.01]', 'epochs=1:5', 'n=range(1,4)'")
    s.add_argument("--max-trials", type=int, metavar="N", help="start at most N trials of the sweep")
    s.add_argument("--random", type=int, metavar="N", help="N random combinations instead of the whole grid")


def add_parsers(sub) -> None:
    s = sub.add_parser("metrics", help="the scalars an execution printed (loss: 0.5, acc=0.9, ...)")
    s.add_argument("id")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help='{"key": [[step, value], ...]}')
    g.add_argument("--csv", action="store_true", help="key,step,value,time rows")
    s.add_argument("--key", metavar="K", help="only this metric")
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser("compare", help="parameters and last/min/max of each metric of several executions")
    s.add_argument("ids", nargs="*", metavar="id")
    s.add_argument("--sweep", metavar="SWEEP_ID", help="compare the trials of a sweep")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true")
    g.add_argument("--csv", action="store_true")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("diff", help="parameters and code of two executions, or of one and its lab")
    s.add_argument("a", metavar="A")
    s.add_argument("b", metavar="B", nargs="?", help="default: the current files of A's lab")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--code", action="store_true", help="only the code")
    g.add_argument("--params", action="store_true", help="only the parameters")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_diff)
