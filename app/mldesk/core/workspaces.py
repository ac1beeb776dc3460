"""Workspaces of finished local runs, reused for the next run of the same lab.

A run's workspace is a copy of its snapshot (``SnapshotStore.materialize``); on a file
system without reflinks (ext4) that copies every file of the lab again, seconds for a
lab of 100,000 files. When a local run ends, its workspace is not deleted but kept
here (one per lab, a few in all), stripped to the snapshot's files as mldesk wrote
them; the next run of that lab takes it and brings it to exactly what a fresh copy of
its snapshot would be: every file the program (or anything else) may have touched is
replaced, every extra file removed.

Which files are kept is decided by what a program cannot fake: when mldesk writes a
file it records the file's inode and ``ctime`` (status change time). Any write,
``chmod``, ``utime``, rename or new hard link sets ``ctime`` to the current time, and
no unprivileged call sets it back. A file is kept only if it is still a regular file
with the recorded inode and ``ctime``, one link, the manifest's size and mode, and
the manifest still wants the same content (sha256) at that path. Timestamps are
coarse (a clock tick): a file whose recorded ``ctime`` is not older than the moment
the record was completed (``marker``, read from the file system's own clock) could
be changed later within the same tick unnoticed, so it is never kept.

A workspace is kept only when no process holds anything in it (``/proc``: a current
or root folder, an open file, a mapping): a program that escaped its process group
must not be able to write into the next run's files. A tree mldesk cannot bring into
shape (a folder it cannot empty) is set aside and deleted, and the run gets a fresh
copy. The program never gets a path to this folder (``MLDESK_HOME/cache/workspaces``,
owner-only like the rest of the store).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import time
from pathlib import Path

from mldesk.agent import fsutil
from mldesk.agent.fsutil import unlink_quiet
from mldesk.core.snapshots import SnapshotStore, file_mode, manifest_dirs

KEEP = 2  # workspaces kept in all (the most recent ones, one per lab)
# a smaller workspace is copied in about the time keeping it costs (looking through
# /proc, ~5 ms): it is deleted as before
MIN_FILES = 500
MIN_BYTES = 64 << 20
MAX_AGE = 3 * 24 * 3600.0  # older ones are removed
MIN_FREE = 0.10  # keep none when less than this share of the disk would stay free
RECORD_VERSION = 1


def _key(lab: str) -> str:
    return hashlib.sha256(os.path.abspath(lab).encode("utf-8", "surrogateescape")).hexdigest()[:20]


def _fs_now(folder: Path, after: int) -> int:
    fd, tmp = fsutil.mkstemp(folder, ".clock-")
    try:
        now = os.fstat(fd).st_ctime_ns
        deadline = time.monotonic() + 0.05
        while now <= after and time.monotonic() < deadline:
            # sets its ctime to the current time: at once a later one where the kernel
            # gives a queried inode fine-grained times (6.13+), else at the next tick
            os.write(fd, b"\0")
            now = os.fstat(fd).st_ctime_ns
            if now <= after:
                time.sleep(0.0002)
        return now
    finally:
        os.close(fd)
        unlink_quiet(tmp)


def make_record(snap_id: str, stats: dict, folder: Path, owner_only: bool = True) -> dict:
    """What mldesk wrote into a workspace (``files``: ``rel -> (sha, inode,
    ctime_ns)``), with the file system's time once everything was written
    (``marker``; ``folder``: a folder on the same file system, not the workspace)."""
    newest = max((v[2] for v in stats.values()), default=0)
    return {"v": RECORD_VERSION, "snapshot": snap_id, "marker": _fs_now(folder, newest), "files": stats,
            "owner_only": owner_only}


def worth_keeping(manifest: dict) -> bool:
    files = [e for e in manifest.values() if e[0] != "link"]
    return len(files) >= MIN_FILES or sum(e[1] for e in files) >= MIN_BYTES


def write_record(path: Path, record: dict) -> None:
    fsutil.write_bytes(path, marshal.dumps(record))  # (created 0600)


def read_record(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            rec = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return rec if valid_record(rec) else None


def valid_record(rec) -> bool:
    return (isinstance(rec, dict) and rec.get("v") == RECORD_VERSION and isinstance(rec.get("files"), dict)
            and isinstance(rec.get("marker"), int))


class ReuseFailed(Exception):
    pass


class WorkspacePool:
    """``root`` (``Layout.workspace_pool``) holds ``<lab key>/tree`` + ``record``."""

    def __init__(self, root: Path, snapshots: SnapshotStore):
        self.root = Path(root)
        self.snapshots = snapshots

    # -- a new run's workspace -------------------------------------------------------
    def materialize(self, snap_id: str, dest: Path, *, lab: str,
                    owner_only: bool = True) -> tuple[int, int, dict]:
        """Make ``dest`` (absent) a copy of the snapshot, from the lab's kept workspace
        when there is one. Returns (files reused, files in the snapshot, the record
        of what was written, for :meth:`retire`; the caller keeps it, out of the
        program's reach, until then; None for a workspace too small to be worth
        keeping: ``MIN_FILES``, ``MIN_BYTES``)."""
        dest = Path(dest)
        manifest = self.snapshots.manifest(snap_id)
        nfiles = sum(1 for e in manifest.values() if e[0] != "link")
        claimed = self._claim(lab, dest)
        kept: dict = {}
        if claimed is not None:
            try:
                kept = self._reconcile(dest, manifest, claimed, owner_only)
            except ReuseFailed:
                self._discard(dest)
        stats = dict(kept)
        if claimed is not None and dest.is_dir():
            self.snapshots.fill(manifest, dest, owner_only=owner_only, keep=kept, stats=stats)
        else:
            self.snapshots.materialize(snap_id, dest, owner_only=owner_only, stats=stats)
        record = make_record(snap_id, stats, dest.parent, owner_only) if worth_keeping(manifest) else None
        return len(kept), nfiles, record

    def _claim(self, lab: str, dest: Path) -> dict | None:
        """Take the lab's kept workspace (atomic: one rename; a second run of the same
        lab finds none) and move its tree to ``dest``; its record, or None."""
        entry = self.root / _key(lab)
        claim = self.root / f".claim-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(entry, claim)
        except OSError:
            return None
        try:
            rec = read_record(claim / "record")
            if rec is None:
                return None
            try:
                os.rename(claim / "tree", dest)
            except OSError:
                return None
            return rec
        finally:
            self._remove(claim)

    def _reconcile(self, dest: Path, manifest: dict, rec: dict, owner_only: bool) -> dict:
        """Remove from ``dest`` everything that is not a file of ``manifest`` provably
        as mldesk wrote it; returns those kept files' records."""
        files, marker = rec["files"], rec["marker"]
        dir_mode = 0o777 & ~fsutil.process_umask(0o022)
        dirs = manifest_dirs(manifest)
        kept: dict = {}
        try:
            self._fix_dir(str(dest), dir_mode)
            todo = [("", str(dest))]
            while todo:
                rel_dir, path = todo.pop()
                with os.scandir(path) as it:
                    entries = list(it)
                for e in entries:
                    rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                    st = e.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        if rel in dirs:
                            self._fix_dir(e.path, dir_mode, st)
                            todo.append((rel, e.path))
                        else:
                            self._remove_tree(e.path)
                        continue
                    want, had = manifest.get(rel), files.get(rel)
                    if (want is not None and had is not None and want[0] != "link"
                            and stat.S_ISREG(st.st_mode) and st.st_nlink == 1
                            and had[0] == want[0] and st.st_size == want[1]
                            and st.st_ino == had[1] and st.st_ctime_ns == had[2] and had[2] < marker
                            and stat.S_IMODE(st.st_mode) == file_mode(want, owner_only)):
                        kept[rel] = (had[0], had[1], had[2])
                    else:
                        os.unlink(e.path)
        except OSError as exc:
            raise ReuseFailed(str(exc)) from None
        return kept

    @staticmethod
    def _fix_dir(path: str, mode: int, st: os.stat_result | None = None) -> None:
        st = st or os.lstat(path)
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)

    @staticmethod
    def _remove_tree(path: str) -> None:
        """Remove a tree the program made, including folders it made unreadable or
        unwritable (their owner gets rwx back; files are never chmod-ed: one may be a
        hard link to the input cache)."""
        import shutil

        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            pass
        stack = [path]
        while stack:
            d = stack.pop()
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
                os.chmod(d, stat.S_IMODE(st.st_mode) | 0o700)
            with os.scandir(d) as it:
                stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        shutil.rmtree(path)

    def _discard(self, dest: Path) -> None:
        """Set a tree that could not be brought into shape aside, then delete it."""
        aside = self.root / f".discard-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.rename(dest, aside)
        except OSError:
            aside = dest
        self._remove(aside)
        if dest.exists():
            raise ReuseFailed(f"{dest} could not be removed")

    @staticmethod
    def _remove(path: Path) -> None:
        import shutil

        try:
            WorkspacePool._remove_tree(str(path))
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(path, ignore_errors=True)

    # -- a finished run's workspace ----------------------------------------------------
    def retire(self, workspace: Path, record: dict | None, *, lab: str) -> bool:
        """Keep a finished run's workspace for the lab's next run, or delete it when
        it cannot be kept (no record, held by a process, little free disk). True when
        it was kept. What is kept is only the snapshot's files as mldesk wrote them:
        everything else (outputs/, already collected; inputs/; whatever the program
        wrote or changed) is removed first, so a kept workspace takes no more room
        than a copy of the lab."""
        workspace = Path(workspace)
        keep = valid_record(record) and not held_by_a_process(workspace) and self._room(workspace)
        new = self.root / f".new-{os.getpid()}-{time.monotonic_ns()}"
        if keep:
            try:
                manifest = self.snapshots.manifest(record["snapshot"])
                files = self._reconcile(workspace, manifest, record, bool(record.get("owner_only", True)))
                record = dict(record, files=files)
            except Exception:  # noqa: BLE001 - (ReuseFailed, a snapshot gone): not kept
                keep = False
        if keep:
            try:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                new.mkdir(mode=0o700)
                write_record(new / "record", record)
                os.rename(workspace, new / "tree")
                entry = self.root / _key(lab)
                old = self.root / f".old-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    os.rename(entry, old)
                except FileNotFoundError:
                    pass
                os.rename(new, entry)
                self._remove(old)
            except OSError:  # (another run of the lab retiring at the same moment)
                keep = False
        if not keep:
            self._remove(workspace)
            self._remove(new)
        self.prune()
        return keep

    def _room(self, workspace: Path) -> bool:
        try:
            fs = os.statvfs(workspace)
        except OSError:
            return False
        return fs.f_blocks > 0 and fs.f_bavail / fs.f_blocks >= MIN_FREE

    def prune(self, keep: int = KEEP, max_age: float = MAX_AGE) -> None:
        """Remove all but the ``keep`` most recent kept workspaces, those older than
        ``max_age``, and what an interrupted claim or retire left behind."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        now = time.time()
        live = []
        for name in names:
            path = self.root / name
            try:
                age = now - os.lstat(path).st_mtime
            except OSError:
                continue
            if name.startswith("."):
                if age > 3600:  # another process's claim or retire takes well under that
                    self._remove(path)
            elif age > max_age:
                self._remove(path)
            else:
                live.append((age, path))
        for _, path in sorted(live)[keep:]:
            self._remove(path)


def held_by_a_process(folder: Path) -> bool:
    """Whether any process we can see has its current or root folder, an open file
    or a mapped file in ``folder`` (Linux ``/proc``; elsewhere: assume it does)."""
    if not os.path.isdir("/proc/self/fd"):
        return True
    base = os.path.realpath(folder)
    inside = base + os.sep
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    for pid in pids:
        if pid == me:
            continue
        proc = f"/proc/{pid}"
        links = [f"{proc}/cwd", f"{proc}/root"]
        try:
            links += [f"{proc}/fd/{fd}" for fd in os.listdir(f"{proc}/fd")]
        except OSError:
            pass  # gone, or not ours to look at (then it cannot write our files either)
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target == base or target.startswith(inside):
                return True
        try:
            with open(f"{proc}/maps", "rb") as f:
                maps = f.read()
        except OSError:
            continue
        if inside.encode("utf-8", "surrogateescape") in maps:
            return True
    return False
