"""``mldesk hosts ...``: the host profiles executions can run on."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
    s = sub.add_parser("hosts", help="hosts executions can run on")
    hs = s.add_subparsers(dest="hosts_cmd", metavar="ACTION", required=True)
    h = hs.add_parser("ls", help="list hosts")
    h.add_argument("--json", action="store_true")
    s.set_defaults(func=run)


def run(args) -> int:
    from mldesk.cli import _engine

    engine = _engine()
    if args.hosts_cmd == "ls":
        hosts = engine.hosts()
        if args.json:
            print(json.dumps(list(hosts.values()), indent=2, sort_keys=True))
            return 0
        for name, cfg in hosts.items():
            where = cfg.get("description") or cfg.get("url", "")
            print(f"{name:<16} {cfg.get('runtime', ''):<8} {where}")
        return 0
    raise AssertionError(args.hosts_cmd)
