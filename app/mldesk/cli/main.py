"""The ``mldesk`` command line, on the same engine and store as the GUI.

Start-up cost matters (``mldesk run`` is measured against other tools), so heavy
modules are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mldesk import __version__
from mldesk.engine import human_bytes, human_duration

from mldesk.cli.common import EXIT_USAGE, CliError, engine as _engine, print_table


# -- formatting -----------------------------------------------------------------
def _ago(ts: float | None) -> str:
    return human_duration(time.time() - ts) + " ago" if ts else "-"


def _ran(ex) -> str:
    if not ex.started_at:
        return "-"
    return human_duration((ex.finished_at or time.time()) - ex.started_at)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


# -- following a log ------------------------------------------------------------------
def follow(engine, exec_id: str, *, split_streams: bool, include_mldesk: bool, offset: int = 0):
    """Copy the log to our stdout/stderr until the execution is final and the log
    is fully read. Returns the final execution record."""
    from mldesk.engine import STDERR, STDOUT

    out = sys.stdout.buffer
    err = sys.stderr.buffer if split_streams else out
    reader = engine.log_reader(exec_id)
    delay = 0.005
    last_check = time.monotonic()
    try:
        while True:
            records, offset = reader.read_from(offset)
            for rec in records:
                if rec.stream == STDOUT:
                    out.write(rec.data)
                elif rec.stream == STDERR:
                    err.write(rec.data)
                elif include_mldesk:
                    if split_streams:
                        out.flush()
                        err.write(b"[mldesk] " + rec.data)
                        err.flush()
                    else:
                        out.write(rec.data)
            if records:
                out.flush()
                err.flush()
                delay = 0.005
                continue
            ex = engine.lookup(exec_id)
            if ex is None:
                raise CliError(f"execution {exec_id} was removed")
            if ex.final:
                records, offset = reader.read_from(offset)
                if not records:
                    return ex
                continue
            if time.monotonic() - last_check > 2.0:
                last_check = time.monotonic()
                engine.reattach_one(exec_id)  # its supervisor died: start another
            engine.wait_for_change(exec_id, delay)  # (wakes at once on new output and at the end)
            delay = min(delay * 2, 0.025)
    finally:
        reader.close()


def _exit_code_of(ex) -> int:
    if ex.state == "finished":
        return 0
    return ex.exit_code or 1


def _follow_or_detach(engine, ex, args) -> int:
    if args.detach:
        if args.json:
            _print_json(ex.public())
        else:
            print(ex.id)
        return 0
    print(f"[mldesk] execution {ex.id} started ({ex.runtime}); Ctrl-C detaches, it keeps running",
          file=sys.stderr, flush=True)
    try:
        final = follow(engine, ex.id, split_streams=True, include_mldesk=True)
    except KeyboardInterrupt:
        print(f"\n[mldesk] detached; execution {ex.id} keeps running.\n"
              f"[mldesk] follow it with `mldesk logs -f {ex.id}`, stop it with `mldesk stop {ex.id}`",
              file=sys.stderr)
        return 130
    if args.json:
        _print_json(final.public())
    elif final.state != "finished":
        print(f"[mldesk] {final.id} {final.state}: {final.reason}", file=sys.stderr)
    return _exit_code_of(final)


# -- commands ----------------------------------------------------------------------
def _gpus_arg(text: str | None):
    from mldesk.engine import parse_gpus_option

    if text is None:
        return None
    try:
        value = parse_gpus_option(text)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return list(value) if isinstance(value, tuple) else value


def cmd_run(args) -> int:
    from mldesk.cli.experiments import start_run

    args.gpus_value = _gpus_arg(args.gpus)
    engine = _engine()
    ex, code = start_run(engine, args)
    if ex is None:  # a sweep
        return code
    return _follow_or_detach(engine, ex, args)


def cmd_restart(args) -> int:
    engine = _engine()
    ex, backup = engine.restart(args.id, name=args.name, allow_local_inputs=args.allow_local_inputs)
    if backup:
        print(f"[mldesk] the lab's previous files are kept as backup {backup} "
              f"(bring them back with `mldesk restore {backup}`; list them with `mldesk backups`)",
              file=sys.stderr)
    return _follow_or_detach(engine, ex, args)


def cmd_ls(args) -> int:
    engine = _engine()
    rows = engine.list(lab=args.lab, sweep=engine.resolve_sweep(args.sweep) if args.sweep else None)
    if args.json:
        _print_json([ex.public() for ex in rows])
        return 0
    if not rows:
        print("no executions yet: start one with `mldesk run LAB`")
        return 0
    table = [("ID", "NAME", "STATE", "EXIT", "HOST/RUNTIME", "STARTED", "RAN", "LAB")]
    for ex in rows:
        table.append((
            ex.id, ex.name if len(ex.name) <= 30 else ex.name[:29] + "…", ex.state,
            "" if ex.exit_code is None else str(ex.exit_code), f"{ex.host}/{ex.runtime}",
            _ago(ex.started_at or ex.created_at), _ran(ex), ex.lab,
        ))
    print_table(table)
    return 0


def cmd_show(args) -> int:
    engine = _engine()
    ex = engine.get(args.id)
    if args.json:
        d = ex.public()
        d["params"] = engine.params(ex)
        d["outputs_dir"] = str(engine.outputs_dir(ex.id))
        d["log"] = str(engine.log_path(ex.id))
        d["gpus"] = engine.gpus_of(ex.id)
        d["resources"] = engine.resource_summary(ex.id)
        _print_json(d)
        return 0
    gpus = engine.gpus_of(ex.id)
    summ = engine.resource_summary(ex.id)
    fields = [
        ("id", ex.id), ("name", ex.name), ("state", ex.state),
        ("exit code", "" if ex.exit_code is None else ex.exit_code), ("reason", ex.reason or ""),
        ("lab", ex.lab), ("host", ex.host), ("runtime", ex.runtime), ("image", ex.image or ""),
        ("hardware", ex.hardware), ("parameters", " ".join(ex.argv)),
        ("overrides", " ".join(f"{k}={v}" for k, v in ex.overrides.items())), ("sweep", ex.sweep or ""),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ex.created_at))),
        ("ran for", _ran(ex)), ("snapshot", ex.snapshot),
        ("inputs", ", ".join(i["name"] for i in ex.inputs)),
        ("outputs", str(engine.outputs_dir(ex.id))),
        ("gpus", ", ".join(map(str, gpus))),
    ]
    if summ["samples"]:
        peak = summ["peak_rss_bytes"]
        used = [f"peak memory {human_bytes(peak)}"] if peak is not None else []
        if summ["mean_cpu_percent"] is not None:  # needs two samples (CPU is a rate)
            used.append(f"mean CPU {summ['mean_cpu_percent']:g} %")
        fields.append(("resources", ", ".join(used) or "not sampled"))
        for index, g in sorted(summ["gpu"].items()):
            util = "?" if g["mean_util_percent"] is None else f"{g['mean_util_percent']:g} %"
            mem = "?" if g["peak_mem_used_bytes"] is None else human_bytes(g["peak_mem_used_bytes"])
            fields.append((f"gpu {index}", f"mean utilisation {util}, peak memory {mem}"))
    for key, value in fields:
        if value != "":
            print(f"{key + ':':<12} {value}")
    return 0


def cmd_stats(args) -> int:
    engine = _engine()
    ex = engine.get(args.id)
    data = engine.stats(ex.id)
    if args.json:
        print(json.dumps(data, sort_keys=True))
        return 0
    # one row per sample time, a column per series
    columns = [("cpu_percent", data["cpu_percent"]), ("rss_bytes", data["rss_bytes"])]
    for index in sorted(data["gpu"], key=int):
        for key, points in sorted(data["gpu"][index].items()):
            columns.append((f"gpu{index}_{key}", points))
    times = sorted({t for _, points in columns for t, _ in points})
    cells = [{t: v for t, v in points} for _, points in columns]
    if args.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["t"] + [name for name, _ in columns])
        for t in times:
            w.writerow([f"{t:.3f}"] + ["" if c.get(t) is None else c[t] for c in cells])
        return 0
    if not times:
        print(f"no resource samples for {ex.id} yet" + (" (it is queued)" if ex.state == "queued" else ""))
        return 0
    print(f"{'time':<10} {'CPU %':>7} {'memory':>10}" + "".join(
        f" {('GPU' + i + ' %'):>8} {('GPU' + i + ' mem'):>10}" for i in sorted(data["gpu"], key=int)))
    gpu_cells = {i: ({t: v for t, v in data["gpu"][i].get("util_percent", [])},
                     {t: v for t, v in data["gpu"][i].get("mem_used_bytes", [])}) for i in data["gpu"]}
    for t in times:
        cpu, rss = cells[0].get(t), cells[1].get(t)
        line = (f"{time.strftime('%H:%M:%S', time.localtime(t)):<10} {'' if cpu is None else f'{cpu:.1f}':>7} "
                f"{'' if rss is None else human_bytes(rss):>10}")
        for i in sorted(gpu_cells, key=int):
            u, m = gpu_cells[i][0].get(t), gpu_cells[i][1].get(t)
            line += f" {'' if u is None else f'{u:g}':>8} {'' if m is None else human_bytes(m):>10}"
        print(line)
    return 0


def cmd_logs(args) -> int:
    from mldesk.engine import MLDESK, STDERR, STDOUT, write_program_output, write_tail

    engine = _engine()
    ex = engine.get(args.id)
    if args.follow:
        follow(engine, ex.id, split_streams=False, include_mldesk=args.all)
        return 0
    streams = (STDOUT, STDERR) + ((MLDESK,) if args.all else ())
    out = sys.stdout.buffer
    with engine.log_reader(ex.id) as reader:
        if args.head is None and args.tail is None:
            write_program_output(reader, out, include_mldesk=args.all)
        else:
            if args.head is not None:
                out.writelines(r.data for r in reader.head(args.head, streams)[0])
            if args.tail is not None:
                write_tail(reader, out, args.tail, streams)  # bounded memory, however long the lines
    out.flush()
    return 0


def cmd_stop(args) -> int:
    engine = _engine()
    for ref in args.ids:
        ex = engine.get(ref)
        if ex.final:
            print(f"{ex.id} is already {ex.state}")
            continue
        engine.stop(ex.id)
        if args.no_wait:
            print(f"stopping {ex.id}")
            continue
        grace = float(ex.options.get("grace", 10.0))
        deadline = time.monotonic() + grace + 30
        while time.monotonic() < deadline:
            now = engine.lookup(ex.id)
            if now is None or now.final:
                break
            time.sleep(0.05)
        else:
            raise CliError(f"{ex.id} did not stop within {grace + 30:.0f} s; see `mldesk logs --all {ex.id}`")
        print(f"{ex.id} {now.state if now else 'removed'}")
    return 0


def cmd_rename(args) -> int:
    ex = _engine().rename(args.id, args.name)
    print(f"{ex.id} is now named {ex.name}")
    return 0


def cmd_rm(args) -> int:
    engine = _engine()
    for ref in args.ids:
        ex = engine.remove(ref)
        print(f"removed {ex.id} ({ex.name})")
    return 0


def cmd_outputs(args) -> int:
    engine = _engine()
    ex = engine.get(args.id)
    if args.to:
        files, size = engine.export_outputs(ex.id, args.to, overwrite=args.overwrite)
        print(f"copied {files} file(s), {human_bytes(size)} to {Path(args.to).resolve()}")
        return 0
    root = engine.outputs_dir(ex.id)
    if not root.is_dir():
        print(f"{ex.id} has no outputs" + ("" if ex.final else " yet (it is still " + ex.state + ")"))
        return 0
    from mldesk.engine import safe_name

    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        print(f"{human_bytes(path.stat().st_size):>10}  {safe_name(str(path.relative_to(root)))}")
    print(f"folder: {root}")
    return 0


def cmd_code(args) -> int:
    engine = _engine()
    ex = engine.get(args.id)
    if args.to:
        dest = engine.export_code(ex.id, args.to, overwrite=args.overwrite)
        print(f"wrote the code of {ex.id} to {dest.resolve()}")
        return 0
    from mldesk.engine import safe_name

    for rel, entry in sorted(engine.code_manifest(ex.id).items()):
        size = "link" if entry[0] == "link" else human_bytes(entry[1])
        print(f"{size:>10}  {safe_name(rel)}")
    return 0


def cmd_backups(args) -> int:
    engine = _engine()
    rows = engine.backups(args.lab)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no backups yet: they are kept whenever restart or a restore replaces a lab's files")
        return 0
    table = [("BACKUP", "WHEN", "LAB", "WHY")]
    for b in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["created_at"]))
        table.append((b["snapshot"], when, b["lab"], b["reason"] + ("" if b["kept"] else " (files gone)")))
    print_table(table)
    return 0


def cmd_restore(args) -> int:
    engine = _engine()
    backup, new = engine.restore_backup(args.backup, args.lab)
    if new is None:
        print(f"{backup['lab']} already holds the files of backup {backup['snapshot']}")
    else:
        print(f"brought back backup {backup['snapshot']} into {backup['lab']}; the files it replaced are "
              f"kept as backup {new} (`mldesk restore {new}` undoes this)")
    return 0


def cmd_init(args) -> int:
    from mldesk.engine import TEMPLATES, create_lab

    if args.template not in TEMPLATES:
        raise CliError(f"unknown template '{args.template}' (choose one of: {', '.join(TEMPLATES)})", EXIT_USAGE)
    try:
        lab = create_lab(Path(args.dir or "."), args.template)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"created a '{args.template}' lab in {Path(lab).resolve()}; run it with `mldesk run {args.dir or '.'}`")
    return 0


def cmd_settings(args) -> int:
    from mldesk.engine import DEFAULT_SETTINGS

    engine = _engine()
    if args.key is None:
        for key in sorted(DEFAULT_SETTINGS):
            print(f"{key} = {json.dumps(engine.setting(key))}")
        return 0
    if args.value is None:
        print(json.dumps(engine.setting(args.key)))
        return 0
    try:
        value = json.loads(args.value)
    except ValueError:
        value = args.value
    engine.set_setting(args.key, value)
    return 0


def cmd_gui(args) -> int:
    open_window = getattr(args, "open_window", None)
    if open_window is None:
        raise CliError("the desktop window is started by the `mldesk` command (mldesk.launcher)")
    return open_window(getattr(args, "lab", None))


# -- parser -------------------------------------------------------------------
class _Skipped:
    """Stands for a command's parser that is not built: takes every call, does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


class _OnlyOne:
    """The subparsers of ``build_parser(only=NAME)``: only NAME's parser is built."""

    def __init__(self, sub, name: str):
        self.sub, self.name, self.found = sub, name, False

    def add_parser(self, name, **kwargs):
        if name != self.name:
            return _Skipped()
        self.found = True
        return self.sub.add_parser(name, **kwargs)


def _columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing ``shutil`` (its
    archive support loads zlib, bz2 and lzma: ~2 ms of every command)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)  # as argparse's default


class _Parser(argparse.ArgumentParser):
    """argparse's parser with :class:`_Formatter` (its subcommands' parsers too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, a command's name, the parser of that
    command alone (None when there is no such command): what parsing a command line
    that starts with it needs, without building the ~25 others (~5 ms)."""
    p = _Parser(prog="mldesk", description="Run machine-learning experiments on your own hardware.")
    p.add_argument("--version", action="version", version=f"mldesk {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    if only is not None:
        sub = _OnlyOne(sub, only)

    s = sub.add_parser("open", help="open a lab (its folder or its ml.yaml) in the desktop window")
    s.add_argument("lab", nargs="?", help="default: the last lab opened")
    s.set_defaults(func=cmd_gui)

    def run_options(s, *, lab: bool):
        if lab:
            s.add_argument("lab", nargs="?", help="lab folder (default: the current folder)")
            s.add_argument("--host", default="local")
            s.add_argument("--runtime", choices=("docker", "process"))
            s.add_argument("--gpus", metavar="N|I,J",
                           help="GPUs for this run: a count (any free ones) or nvidia-smi indices (0,2); "
                                "overrides ml.yaml's gpus")
        s.add_argument("--name", help="a name for the execution (at most 100 characters)")
        s.add_argument("--detach", "-d", action="store_true", help="start it and return at once")
        s.add_argument("--json", action="store_true", help="print the execution record as JSON")
        s.add_argument("--allow-local-inputs", action="store_true",
                       help="let the lab read the local files outside it that its ml.yaml lists as "
                            "file:// inputs (remembered for this lab and these files)")

    from mldesk.cli import experiments

    s = sub.add_parser("run", help="start an execution of a lab (or a sweep of several)")
    run_options(s, lab=True)
    experiments.add_run_options(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("restart", help="restore an execution's code into its lab and run it again")
    s.add_argument("id")
    run_options(s, lab=False)
    s.set_defaults(func=cmd_restart)

    s = sub.add_parser("ls", help="list executions, newest first")
    s.add_argument("--lab")
    s.add_argument("--sweep", metavar="SWEEP_ID", help="only the trials of this sweep")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser("show", help="show one execution")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("stats", help="an execution's resource samples (CPU, memory, GPUs)")
    s.add_argument("id")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help='{"cpu_percent": [[t, v], ...], "rss_bytes": ..., "gpu": {...}}')
    fmt.add_argument("--csv", action="store_true", help="one row per sample time")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("logs", help="print an execution's output (what the program printed)")
    s.add_argument("id")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    s.add_argument("--head", type=int, metavar="N", help="only the first N lines")
    s.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    s.add_argument("--all", action="store_true", help="include mldesk's own stage messages")
    s.set_defaults(func=cmd_logs)

    experiments.add_parsers(sub)

    s = sub.add_parser("stop", help="stop executions (SIGTERM, then SIGKILL after the grace period)")
    s.add_argument("ids", nargs="+", metavar="id")
    s.add_argument("--no-wait", action="store_true", help="return without waiting for it to end")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser("rename", help="give an execution a name")
    s.add_argument("id")
    s.add_argument("name")
    s.set_defaults(func=cmd_rename)

    s = sub.add_parser("rm", help="remove executions (record, log, outputs)")
    s.add_argument("ids", nargs="+", metavar="id")
    s.set_defaults(func=cmd_rm)

    s = sub.add_parser("outputs", help="list an execution's outputs or copy them")
    s.add_argument("id")
    s.add_argument("--to", metavar="DIR", help="copy them into DIR (new names only: stops on a name taken)")
    s.add_argument("--overwrite", action="store_true", help="with --to: replace files of the same name "
                   "(folders are never removed)")
    s.set_defaults(func=cmd_outputs)

    s = sub.add_parser("code", help="list an execution's code snapshot or write it out")
    s.add_argument("id")
    s.add_argument("--to", metavar="DIR", help="write it into DIR (new names only: stops on a name taken)")
    s.add_argument("--overwrite", action="store_true", help="with --to: replace files of the same name "
                   "(folders are never removed)")
    s.set_defaults(func=cmd_code)

    from mldesk.cli import hosts as hosts_cli

    hosts_cli.add_parsers(sub)

    s = sub.add_parser("backups", help="list the backups of labs' files (kept whenever a restore replaced them)")
    s.add_argument("lab", nargs="?", help="only this lab's backups")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_backups)

    s = sub.add_parser("restore", help="bring a lab's files back from a backup (see `mldesk backups`)")
    s.add_argument("backup", help="the backup's id (or a unique prefix)")
    s.add_argument("--lab", help="the lab, where a backup id is shared by several labs")
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser("init", help="create a lab from a template")
    s.add_argument("dir", nargs="?")
    s.add_argument("--template", default="empty", help="empty (default) or xor")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("settings", help="show or change settings (image aliases, stop grace, ...)")
    s.add_argument("key", nargs="?")
    s.add_argument("value", nargs="?", help="a JSON value (or a plain string)")
    s.set_defaults(func=cmd_settings)
    if only is not None and not sub.found:
        return None
    return p


def _report_crash(exc: BaseException) -> int:
    import traceback

    try:
        from mldesk.engine import data_home as home

        path = home() / "crash.log"
        with open(path, "a") as f:
            f.write(f"--- {time.ctime()} mldesk {__version__} {sys.argv}\n")
            traceback.print_exception(exc, file=f)
        where = f"; details in {path}"
    except OSError:
        where = ""
    print(f"mldesk: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
    return 70


def main(argv: list[str] | None = None, *, open_window=None) -> int:
    """Run one CLI command; ``open_window(lab)`` starts the window (``mldesk`` alone and
    ``mldesk open``), handed in by the launcher so the CLI never imports the UI."""
    argv = sys.argv[1:] if argv is None else argv
    # a command line starting with a command's name is parsed by that command's parser
    # alone (the top level then only picks it); anything else by the whole one
    parser = (argv and not argv[0].startswith("-") and build_parser(only=argv[0])) or build_parser()
    args = parser.parse_args(argv)
    args.open_window = open_window
    if args.command is None:
        return cmd_gui(args)
    from mldesk.engine import ConfigError, UserError

    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mldesk: ml.yaml has {len(exc.problems)} problem(s); nothing was started:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"mldesk: error: {exc}", file=sys.stderr)
        return exc.code
    except UserError as exc:  # the one root of errors a user can cause: one line
        print(f"mldesk: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"mldesk: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, details in a file
        return _report_crash(exc)


if __name__ == "__main__":
    raise SystemExit(main())
