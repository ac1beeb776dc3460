"""Where mldesk keeps its data: ``MLDESK_HOME`` or the platform's user data folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def home() -> Path:
    env = os.environ.get("MLDESK_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("mldesk", appauthor=False))
    private_dir(path)
    return path.resolve()


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) owner-only: 0700."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def tighten(root: Path) -> None:
    """Make an existing data folder owner-only (SPEC 10a): the folder itself 0700
    (nobody else can reach anything below it) and its top-level entries 0700/0600.
    Entries owned by someone else are left alone."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    paths = [root]
    try:
        paths += [root / name for name in os.listdir(root)]
    except OSError:
        pass
    for path in paths:
        try:
            st = os.lstat(path)
            if uid is not None and st.st_uid != uid or stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            want = (mode & 0o700) | (0o700 if stat.S_ISDIR(st.st_mode) else 0o600)
            if stat.S_ISREG(st.st_mode) and not mode & 0o200:
                want = mode & 0o700  # read-only files (blobs) stay read-only
            if want != mode:
                os.chmod(path, want)
        except OSError:
            pass


class Layout:
    """The folders under one data home (see docs/ARCHITECTURE.md)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else home()
        private_dir(self.root)
        tighten(self.root)
        self.db = self.root / "mldesk.db"
        self.blobs = self.root / "blobs"
        self.snapshots = self.root / "snapshots"
        self.input_cache = self.root / "cache" / "inputs"
        self.workspace_pool = self.root / "cache" / "workspaces"  # core/workspaces.py
        self.config_cache = self.root / "cache" / "mlyaml.json"  # parsed ml.yaml texts (labconfig)
        self.executions = self.root / "executions"
        self.known_hosts = self.root / "known_hosts"

    def execution_dir(self, exec_id: str) -> Path:
        return self.executions / exec_id

    def log_path(self, exec_id: str) -> Path:
        return self.executions / exec_id / "log.bin"

    def workspace(self, exec_id: str) -> Path:
        return self.executions / exec_id / "workspace"

    def outputs(self, exec_id: str) -> Path:
        return self.executions / exec_id / "outputs"

    def resources_path(self, exec_id: str) -> Path:
        """Resource samples (CPU, memory, GPUs), JSON lines (mldesk.agent.resources)."""
        return self.executions / exec_id / "resources.jsonl"

    def progress_path(self, exec_id: str) -> Path:
        return self.executions / exec_id / "progress.json"

    def writer_lock(self, exec_id: str) -> Path:
        return self.executions / exec_id / "writer.lock"


def mount_of(path: Path | str) -> tuple[str, str]:
    """(device, mount point) of the file system holding ``path`` (or its nearest
    existing parent); best effort, for messages."""
    p = os.path.abspath(os.fspath(path))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        dev = os.stat(p).st_dev
        while True:
            parent = os.path.dirname(p)
            if parent == p or os.stat(parent).st_dev != dev:
                break
            p = parent
    except OSError:
        return "?", p
    device = p
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1].replace("\\040", " ") == p:
                    device = fields[0]
    except OSError:
        pass
    return device, p


def no_space_message(path: Path | str) -> str:
    """"no space left on DEVICE for PATH" (with the mount point when it says more)."""
    device, mount = mount_of(path)
    where = device if device == mount else f"{device} (mounted at {mount})"
    return f"no space left on {where} for {path}"
