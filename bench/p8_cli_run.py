"""P8: a trivial run to completion, `mldesk run --runtime process`, vs Guild AI's
`guild run` of the same script. Goal: <= 0.25x. Guild AI is installed from PyPI into
a cached venv (/tmp/mldesk-bench-guild) the first time. Both run the same Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MLDESK, env_for, median, table, timed, tmpdir, verdict  # noqa: E402

GUILD_VENV = Path("/tmp/mldesk-bench-guild")
RUNS = 7


def guild() -> str:
    exe = GUILD_VENV / "bin" / "guild"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GUILD_VENV)], check=True)
        subprocess.run([str(GUILD_VENV / "bin" / "pip"), "install", "-q", "guildai"], check=True)
    return str(exe)


def main() -> int:
    guild_exe = guild()
    with tmpdir("mldesk-p8-") as tmp:
        tmp = Path(tmp)
        lab = tmp / "lab"
        (lab / ".venv" / "bin").mkdir(parents=True)
        (lab / "main.py").write_text("print('hello')\n")
        # both tools run the same interpreter: the lab's .venv points at it
        real_python = os.path.realpath(str(GUILD_VENV / "bin" / "python"))
        os.symlink(real_python, lab / ".venv" / "bin" / "python")
        env = env_for(tmp / "home")
        genv = dict(os.environ, GUILD_HOME=str(tmp / "guild-home"))
        (tmp / "guild-home").mkdir()
        ours_cmd = [*MLDESK, "run", str(lab), "--runtime", "process"]
        guild_cmd = [guild_exe, "run", "-y", "main.py"]
        timed(ours_cmd, env=env)
        timed(guild_cmd, env=genv, cwd=lab)
        ours, theirs = [], []
        for _ in range(RUNS):
            theirs.append(timed(guild_cmd, env=genv, cwd=lab))
            ours.append(timed(ours_cmd, env=env))
    g, o = median(theirs), median(ours)
    ratio = o / g
    print(table([
        ("guild run (baseline)", f"{g * 1000:.0f}", "1.00x", "", ""),
        ("mldesk run --runtime process", f"{o * 1000:.0f}", f"{ratio:.2f}x", "<= 0.25x", verdict(ratio <= 0.25)),
    ], ("P8 case", "median ms", "ratio", "goal", "result")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
