"""The agent client: installs this version of the ``mldesk.agent`` package on a host
(once per version, content-hashed) and builds the argv of agent commands there."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

AGENT_ENTRY = "agent.py"  # the launcher in WORKDIR/agent/<hash>/ (the package beside it)
_AGENT_DIR = Path(__file__).resolve().parent.parent.parent / "agent"
_LAUNCHER = (
    '"""mldesk\'s agent on this host: python3 agent.py COMMAND ARGS..."""\n'
    "import os, sys\n"
    "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n"
    "from mldesk.agent.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
# Run by the host's python3: resolve the work folder, say whether this agent version is
# there. Fixed code (no user text); arguments are passed as argv.
_PROBE = (
    "import json,os,sys\n"
    "w=os.path.abspath(os.path.expanduser(sys.argv[1]))\n"
    "a=os.path.join(w,'agent',sys.argv[2])\n"
    "print(json.dumps({'workdir':w,'agent':a,'have':os.path.isfile(os.path.join(a,'agent.py')),"
    "'version':list(sys.version_info[:3]),'exe':sys.executable}))\n"
)
_INSTALL = (
    "import json,os,sys,tempfile,shutil\n"
    "a=sys.argv[1]\n"
    "files=json.loads(sys.stdin.buffer.read().decode('utf-8'))\n"
    "base=os.path.dirname(a)\n"
    "os.makedirs(base,exist_ok=True)\n"
    "t=tempfile.mkdtemp(dir=base,prefix='.tmp-')\n"
    "for n,text in files.items():\n"
    "    f=os.path.join(t,*n.split('/'))\n"
    "    os.makedirs(os.path.dirname(f),exist_ok=True)\n"
    "    open(f,'w',encoding='utf-8').write(text)\n"
    "try:\n"
    "    os.rename(t,a)\n"
    "except OSError:\n"
    "    shutil.rmtree(t)\n"
    "print('ok')\n"
)


def agent_sources() -> dict[str, str]:
    """What goes to a host: the ``mldesk.agent`` package (with a stub ``mldesk``
    package above it) and the ``agent.py`` launcher, by relative path."""
    out = {AGENT_ENTRY: _LAUNCHER, "mldesk/__init__.py": '"""mldesk\'s agent package (shipped)."""\n'}
    for path in sorted(_AGENT_DIR.glob("*.py")):
        out[f"mldesk/agent/{path.name}"] = path.read_text(encoding="utf-8")
    return out


def agent_version(sources: dict[str, str] | None = None) -> str:
    sources = sources or agent_sources()
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return h.hexdigest()[:16]


def ensure_agent(conn) -> dict[str, Any]:
    """Make sure this version of the agent is on the host; returns {workdir, agent,
    python, version} (cached on the connection)."""
    from mldesk.runtimes.ssh.transport import HostError

    with conn._agent_lock:
        if conn.agent_info is not None:
            return conn.agent_info
        profile = conn.profile
        python = profile.python or "python3"
        sources = agent_sources()
        version = agent_version(sources)
        r = conn.run([python, "-c", _PROBE, profile.workdir, version], timeout=max(30.0, profile.connect_timeout))
        if r.code != 0:
            err = r.stderr.strip().splitlines()
            if r.code == 127 or "not found" in r.stderr:
                raise HostError(f"{python} was not found on {conn.label}: install Python 3.8 or newer "
                                "there, or set the host's Python in its profile")
            raise HostError(f"cannot run {python} on {conn.label}: {err[-1] if err else f'exit code {r.code}'}")
        try:
            info = json.loads(r.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HostError(f"{python} on {conn.label} answered something unexpected: "
                            f"{r.stdout[:200]!r}") from None
        if tuple(info["version"]) < (3, 8):
            raise HostError(f"{python} on {conn.label} is Python {'.'.join(map(str, info['version']))}; "
                            "mldesk's agent needs 3.8 or newer there (set the host's Python in its profile)")
        if not info["have"]:
            r = conn.run([python, "-c", _INSTALL, info["agent"]], input=json.dumps(sources).encode(),
                         timeout=60.0)
            if r.code != 0:
                raise HostError(f"cannot install mldesk's agent in {info['agent']} on {conn.label}: "
                                f"{(r.stderr.strip().splitlines() or ['exit code %d' % r.code])[-1]}")
        conn.agent_info = {"workdir": info["workdir"], "agent": info["agent"], "python": python,
                           "version": ".".join(map(str, info["version"])), "exe": info.get("exe")}
        return conn.agent_info


def agent_argv(conn, *args: Any) -> list[str]:
    info = ensure_agent(conn)
    return [info["python"], os.path.join(info["agent"], AGENT_ENTRY), *[str(a) for a in args]]


def probe(conn) -> dict[str, Any]:
    """What ``mldesk hosts test`` reports: OS, Python, Docker, GPUs, free disk."""
    from mldesk.runtimes.ssh.transport import HostError

    info = ensure_agent(conn)
    r = conn.run(agent_argv(conn, "probe", info["workdir"]), timeout=60.0)
    if r.code != 0:
        raise HostError(f"probing {conn.label} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout.decode("utf-8", "replace"))


def slurm_info(conn, settings: dict[str, Any], *, shared_check: bool = True) -> dict[str, Any]:
    """A Slurm login node's cluster: sinfo partitions, scontrol config values and (with
    ``shared_check``) whether a tiny job can write into the work folder."""
    from mldesk.runtimes.ssh.transport import HostError

    info = ensure_agent(conn)
    r = conn.run(agent_argv(conn, "slurm-info", info["workdir"], "1" if shared_check else "0"),
                 input=json.dumps(settings).encode(), timeout=180.0)
    if r.code != 0:
        raise HostError(f"asking Slurm on {conn.label} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout.decode("utf-8", "replace"))
