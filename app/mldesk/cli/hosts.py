"""``mldesk hosts ...``: the host profiles executions can run on.

    mldesk hosts add NAME ssh://[user@]host[:port] [--key PATH] [--runtime docker|process|slurm]
                     [--workdir DIR] [--gpus] [--network bridge|none|host]
                     [--accept-fingerprint SHA256:...] [--jump [user@]host[:port]] ...
                     [--partition P] [--time 1:00:00] [--sbatch-arg=ARG ...]   (--runtime slurm)
    mldesk hosts ls [--json]
    mldesk hosts rm NAME
    mldesk hosts test NAME [--accept-fingerprint SHA256:...] [--json]
    mldesk hosts status [NAME] [--json]

An unknown host key is accepted only with ``--accept-fingerprint`` (scripts) or a
"yes" typed at a terminal; with no terminal and no flag mldesk refuses.
"""

from __future__ import annotations

import json
import sys

EXIT_FAIL = 1
EXIT_HOSTKEY = 3


def add_parsers(sub) -> None:
    s = sub.add_parser("hosts", help="hosts executions can run on (SSH profiles)")
    hs = s.add_subparsers(dest="hosts_cmd", metavar="ACTION", required=True)

    h = hs.add_parser("ls", help="list hosts")
    h.add_argument("--json", action="store_true")

    h = hs.add_parser("add", help="add (or replace) an SSH host profile")
    h.add_argument("name", help="the name executions use (mldesk run --host NAME)")
    h.add_argument("url", metavar="ssh://[user@]host[:port]",
                   help="the address (host may be an alias of ~/.ssh/config)")
    h.add_argument("--key", metavar="PATH", help="private key file (default: ~/.ssh/config, ssh-agent, ~/.ssh/id_*)")
    h.add_argument("--runtime", choices=("docker", "process", "slurm"), default="docker",
                   help="how the host runs code (default docker; slurm: the host is a Slurm login node "
                        "and each execution one batch job)")
    h.add_argument("--workdir", metavar="DIR", default="~/.mldesk",
                   help="mldesk's folder on the host (default ~/.mldesk)")
    h.add_argument("--gpus", action="store_true", help="give containers the host's NVIDIA GPUs (--gpus all)")
    h.add_argument("--network", choices=("bridge", "none", "host"), default="bridge",
                   help="container network (default bridge)")
    h.add_argument("--jump", metavar="[USER@]HOST[:PORT]", help="connect through this jump host (ProxyJump)")
    h.add_argument("--python", metavar="PATH", help="the host's Python (default python3)")
    h.add_argument("--stop-grace", type=float, metavar="SECONDS", help="seconds between SIGTERM and SIGKILL")
    h.add_argument("--max-parallel", type=int, default=0, metavar="N",
                   help="run at most N executions at once there (0: no limit)")
    h.add_argument("--outputs-interval", type=float, default=30.0, metavar="SECONDS",
                   help="copy outputs back every SECONDS while running (default 30; 0: only at the end)")
    h.add_argument("--keepalive", type=float, default=10.0, metavar="SECONDS",
                   help="keepalive interval; a link silent for about twice this counts as dropped")
    h.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    h.add_argument("--password", action="store_true",
                   help="log in with a password (asked now at a terminal, kept in the OS keyring)")
    h.add_argument("--accept-fingerprint", metavar="SHA256:...",
                   help="accept the host key if (and only if) it has this fingerprint")
    h.add_argument("--no-check", action="store_true", help="save the profile without connecting")
    g = h.add_argument_group("Slurm (--runtime slurm; --workdir must be on a file system the compute "
                             "nodes share)")
    g.add_argument("--partition", metavar="P", help="sbatch --partition (default: the cluster's default)")
    g.add_argument("--time", metavar="LIMIT", help="sbatch --time, e.g. 1:00:00")
    g.add_argument("--cpus", type=int, metavar="N", help="sbatch --cpus-per-task")
    g.add_argument("--mem", metavar="SIZE", help="sbatch --mem, e.g. 8G")
    g.add_argument("--gpus-per-job", type=int, default=1, metavar="N",
                   help="--gres=gpu:N for labs with hardwareType gpu (default 1)")
    g.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="one more sbatch option, repeatable; write --sbatch-arg=--qos=debug")
    g.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for Slurm's commands and the job, repeatable")

    h = hs.add_parser("rm", help="remove a host profile")
    h.add_argument("name")

    h = hs.add_parser("test", help="connect and report OS, Python, Docker, GPUs and free disk")
    h.add_argument("name")
    h.add_argument("--accept-fingerprint", metavar="SHA256:...",
                   help="accept the host key if (and only if) it has this fingerprint")
    h.add_argument("--json", action="store_true")

    h = hs.add_parser("status", help="reachability, GPUs and their use, running executions (all hosts or one)")
    h.add_argument("name", nargs="?")
    h.add_argument("--json", action="store_true")
    s.set_defaults(func=run)


def _err(text: str) -> None:
    print(f"mldesk: error: {text}", file=sys.stderr)


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _ask_host_key(label: str, key_type: str, fp: str) -> bool:
    """The terminal yes/no for an unknown host key (only called at a terminal)."""
    print(f"The authenticity of host {label} cannot be established: it is not in "
          f"~/.ssh/known_hosts nor in mldesk's known hosts file.", file=sys.stderr)
    print(f"Its {key_type} key fingerprint is {fp}.", file=sys.stderr)
    print("Compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub, run there).",
          file=sys.stderr)
    try:
        answer = input("Accept this key and remember it? [yes/no] ").strip().lower()
    except EOFError:
        return False
    return answer in ("y", "yes")


def _ask_secret(kind: str, prompt: str) -> str | None:
    import getpass

    from mldesk.engine.hosts import keyring_problem, no_keyring_message

    if keyring_problem():
        print(f"note: {no_keyring_message('passwords or passphrases')}", file=sys.stderr)
    try:
        return getpass.getpass(prompt)
    except (EOFError, KeyboardInterrupt):
        return None


def _askers(accept: str | None) -> dict:
    """The CLI's host-key policy: the flag, else a terminal question, else refuse."""
    interactive = _interactive()
    return {"accept_fingerprint": accept,
            "ask_host_key": _ask_host_key if interactive and not accept else None,
            "ask_secret": _ask_secret if interactive else None}


def _test(engine, name: str, accept: str | None, as_json: bool) -> int:
    from mldesk.engine.hosts import HostError, HostKeyError, HostKeyUnknown

    try:
        report = engine.profiles.test(name, **_askers(accept))
    except HostKeyError as exc:
        _err(str(exc).replace("NAME", name))
        if isinstance(exc, HostKeyUnknown) and not accept and not _interactive():
            print("mldesk: no terminal to ask at and no --accept-fingerprint: the key was not accepted",
                  file=sys.stderr)
        return EXIT_HOSTKEY
    except HostError as exc:
        _err(str(exc))
        return EXIT_FAIL
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(report.text())
    return 0


def run(args) -> int:
    from mldesk.cli.common import engine as _engine

    engine = _engine()
    cmd = args.hosts_cmd
    if cmd == "ls":
        hosts = engine.hosts()
        if args.json:
            print(json.dumps(list(hosts.values()), indent=2, sort_keys=True))
            return 0
        for name, cfg in hosts.items():
            where = cfg.get("url") or cfg.get("description") or ""
            extra = []
            if cfg.get("gpus"):
                extra.append("gpus")
            if cfg.get("jump"):
                extra.append(f"via {cfg['jump']}")
            print(f"{name:<16} {cfg.get('runtime', ''):<8} {where}" + (f"  ({', '.join(extra)})" if extra else ""))
        return 0
    if cmd == "rm":
        if not engine.profiles.remove(args.name):
            _err(f"unknown host '{args.name}' (see `mldesk hosts ls`)")
            return EXIT_FAIL
        print(f"removed host {args.name}")
        return 0
    if cmd == "test":
        return _test(engine, args.name, args.accept_fingerprint, args.json)
    if cmd == "status":
        return _status(engine, args.name, args.json)
    if cmd == "add":
        return _add(engine, args)
    raise AssertionError(cmd)


def _status(engine, name: str | None, as_json: bool) -> int:
    from mldesk.engine import human_bytes

    rows = engine.host_status(name)
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    for row in rows:
        state = "reachable" if row["reachable"] else f"unreachable ({row.get('error', '?')})"
        print(f"{row['name']:<16} {state:<12} {row['running']} running")
        for g in row["gpus"]:
            mem = (f"{human_bytes(g['memory_used_bytes'] or 0)} / {human_bytes(g['memory_total_bytes'] or 0)}"
                   if g.get("memory_total_bytes") else "memory ?")
            util = "?" if g.get("util_percent") is None else f"{g['util_percent']:g} %"
            held = f"  held by {g['held_by']}" if g.get("held_by") else ""
            print(f"  GPU {g['index']}  {g['name']}  {mem}  util {util}{held}")
        slurm = row.get("slurm")
        if slurm and not slurm.get("error"):
            for part in slurm.get("partitions") or []:
                print(f"  Slurm partition {part['name']}: {part.get('nodes')} node(s) {part.get('state')}, "
                      f"GRES {part.get('gres')}")
        elif row["reachable"] and not row["gpus"]:
            print("  no GPU")
    return 0 if all(r["reachable"] for r in rows) or not name else EXIT_FAIL


def _add(engine, args) -> int:
    from mldesk.engine.hosts import HostError, HostKeyError, HostProfile

    slurm_flags = [f for f, v in (("--partition", args.partition), ("--time", args.time), ("--cpus", args.cpus),
                                  ("--mem", args.mem), ("--sbatch-arg", args.sbatch_arg)) if v]
    if slurm_flags and args.runtime != "slurm":
        _err(f"{', '.join(slurm_flags)} only go with --runtime slurm")
        return EXIT_FAIL
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            _err(f"--env {item!r}: write NAME=VALUE")
            return EXIT_FAIL
        env[key] = value
    try:
        profile = HostProfile.from_url(
            args.name, args.url, key=args.key, runtime=args.runtime, workdir=args.workdir, gpus=args.gpus,
            network=args.network, jump=args.jump, python=args.python, stop_grace=args.stop_grace,
            max_parallel=args.max_parallel, outputs_interval=args.outputs_interval,
            keepalive=args.keepalive, connect_timeout=args.connect_timeout, password=args.password,
            slurm_partition=args.partition, slurm_time=args.time, slurm_cpus=args.cpus, slurm_mem=args.mem,
            slurm_gpus=args.gpus_per_job, slurm_args=list(args.sbatch_arg), env=env)
    except HostError as exc:
        _err(str(exc))
        return EXIT_FAIL
    if profile.key:
        import os

        profile.key = os.path.abspath(os.path.expanduser(profile.key))
    existed = engine.profiles.exists(profile.name)
    check = not args.no_check and (args.accept_fingerprint or _interactive())
    if check:
        try:
            host_key, trust = engine.profiles.check_login(profile, **_askers(args.accept_fingerprint))
        except HostKeyError as exc:
            _err(str(exc).replace("NAME", profile.name))
            print(f"mldesk: host {profile.name} was not saved", file=sys.stderr)
            return EXIT_HOSTKEY
        except HostError as exc:
            _err(str(exc))
            print(f"mldesk: host {profile.name} was not saved (use --no-check to save it anyway)",
                  file=sys.stderr)
            return EXIT_FAIL
    engine.profiles.save(profile)
    print(f"{'updated' if existed else 'added'} host {profile.name}: {profile.url} "
          f"({profile.runtime} runtime, work folder {profile.workdir})")
    if check:
        print(f"connected and logged in; host key {host_key} "
              f"({'accepted' if trust == 'accepted' else 'already known'})")
    elif not args.no_check:
        print(f"not connected yet (no terminal to confirm a host key at): run `mldesk hosts test {profile.name}` "
              "to check it, with --accept-fingerprint SHA256:... for a new host key")
    return 0
