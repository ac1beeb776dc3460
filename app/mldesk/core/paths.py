"""Where mldesk keeps its data: ``MLDESK_HOME`` or the platform's user data folder."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("MLDESK_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("mldesk", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


class Layout:
    """The folders under one data home (see docs/ARCHITECTURE.md)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else home()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "mldesk.db"
        self.blobs = self.root / "blobs"
        self.snapshots = self.root / "snapshots"
        self.input_cache = self.root / "cache" / "inputs"
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
