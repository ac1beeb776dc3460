"""Content-addressed, deduplicated snapshots of a lab folder.

A file's content is stored once under ``blobs/ab/<sha256>``; a snapshot is a manifest
``snapshots/<id>.json`` mapping relative paths to ``[sha256, size, mode]`` (or
``["link", target]`` for symbolic links, which are recorded, never followed). The id
is a hash of the manifest, so an unchanged lab snapshots to the same id.

A per-lab stat cache (size, mtime, inode -> sha256) makes re-snapshotting an
unchanged lab a directory walk with no reading. Creation holds a shared lock on the
blob store and garbage collection an exclusive one, so GC never removes a blob that
a snapshot being taken right now relies on.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import json
import marshal
import os
import re
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator
from mldesk.agent.errors import UserError
from mldesk.agent.fsutil import mkstemp, process_umask, unlink_quiet, write_bytes
from mldesk.core.value import FrozenValue

CHUNK = 1 << 20


class SnapshotInfo(FrozenValue):
    _fields = __slots__ = ("id", "files", "bytes", "new_bytes")

    def __init__(self, id: str, files: int, bytes: int, new_bytes: int):
        self._set("id", id)
        self._set("files", files)
        self._set("bytes", bytes)
        self._set("new_bytes", new_bytes)  # bytes that were not yet in the blob store


class SnapshotError(UserError):
    pass


def _blob_writer(blob: Path):
    def write(fd: int) -> int:
        from mldesk.agent.outputs import copy_sparse

        src = os.open(blob, os.O_RDONLY)
        try:
            return copy_sparse(src, fd, os.fstat(src).st_size)
        finally:
            os.close(src)
    return write


def _excluded(rel: str, name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def excluded_path(rel: str, patterns: Iterable[str]) -> bool:
    """Is ``rel`` (a "/"-separated path in a lab) or any folder above it excluded?"""
    patterns = tuple(patterns)
    parts = rel.split("/")
    return any(_excluded("/".join(parts[:i]), parts[i - 1], patterns) for i in range(1, len(parts) + 1))


def _lstat(path: Path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _remove_empty_tree(path: Path) -> None:
    """Remove a folder that holds only (now empty) folders; fails on anything else."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        if filenames:
            raise OSError(errno.ENOTEMPTY, "folder is not empty", dirpath)
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))
    os.rmdir(path)


MATERIALIZE_THREADS = 4  # file creation is mostly kernel time (the GIL is released)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def manifest_dirs(manifest: dict[str, list]) -> set[str]:
    """Every folder the manifest's paths lie in (relative; not the root)."""
    dirs: set[str] = set()
    for rel in manifest:
        i = rel.rfind("/")
        while i > 0:
            d = rel[:i]
            if d in dirs:
                break
            dirs.add(d)
            i = rel.rfind("/", 0, i)
    return dirs


def file_mode(entry: list, owner_only: bool) -> int:
    """The permission bits a materialised file gets: never set-uid/set-gid, always
    writable by its owner (the program may change its workspace)."""
    mode = entry[2]
    return ((mode & 0o700) if owner_only else (mode & 0o777)) | stat.S_IWUSR


class _Materializer:
    """One fast materialisation of a manifest into a new, empty folder."""

    def __init__(self, blobs: str, dest: str, owner_only: bool, stats: dict | None = None):
        self.blobs, self.dest, self.owner_only = blobs, dest, owner_only
        self.umask = process_umask(-1)  # (unknown: always chmod)
        self.cfr = hasattr(os, "copy_file_range")
        self.failed: BaseException | None = None
        self.missing = ""  # the sha of a blob found missing
        # rel -> (sha, inode, ctime_ns) of each file written, when asked for (a
        # workspace to be reused later: core/workspaces.py)
        self.stats = stats

    def run(self, manifest: dict[str, list], keep: "set[str] | dict" = frozenset()) -> None:
        """Make the manifest's folders (existing ones are kept) and links, and write
        its files except those in ``keep`` (already in place)."""
        dest = self.dest
        dirs = manifest_dirs(manifest)
        files = [(rel, e) for rel, e in manifest.items() if e[0] != "link" and rel not in keep]
        for d in sorted(dirs):  # parents sort before their children
            try:
                os.mkdir(f"{dest}/{d}")
            except FileExistsError:
                if not os.path.isdir(f"{dest}/{d}") or os.path.islink(f"{dest}/{d}"):
                    raise
        for rel, entry in manifest.items():
            if entry[0] == "link":
                os.symlink(entry[1], f"{dest}/{rel}")
        n = min(MATERIALIZE_THREADS, max(1, len(files) // 64))
        if n <= 1:
            self._write(files)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n, thread_name_prefix="materialize") as pool:
                for f in [pool.submit(self._write, files[i::n]) for i in range(n)]:
                    f.result()
        if self.failed is not None:
            raise self.failed

    def _write(self, files: list[tuple[str, list]]) -> None:
        blobs, dest, owner_only, umask, stats = self.blobs, self.dest, self.owner_only, self.umask, self.stats
        try:
            for rel, entry in files:
                if self.failed is not None:
                    return
                sha, size, mode = entry[0], entry[1], file_mode(entry, owner_only)
                try:
                    src = os.open(f"{blobs}/{sha[:2]}/{sha}", os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    self.missing = sha
                    raise SnapshotError(f"blob {sha} of {rel} is missing from the store (removed behind "
                                        "mldesk's back?); the next run snapshots the lab afresh") from None
                try:
                    fd = os.open(f"{dest}/{rel}", _CREATE, mode)
                    try:
                        if size:
                            self._copy(src, fd, size)
                        if mode & umask:
                            os.fchmod(fd, mode)
                        if stats is not None:
                            st = os.fstat(fd)
                            stats[rel] = (sha, st.st_ino, st.st_ctime_ns)
                    finally:
                        os.close(fd)
                finally:
                    os.close(src)
        except BaseException as exc:
            if self.failed is None:
                self.failed = exc
            raise

    def _copy(self, src: int, fd: int, size: int) -> None:
        if self.cfr:
            try:
                left = size
                while left > 0:
                    n = os.copy_file_range(src, fd, left)
                    if n == 0:
                        break
                    left -= n
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                self.cfr = False  # not on this file system: read and write
                os.lseek(src, 0, os.SEEK_SET)
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
        while True:
            buf = os.read(src, CHUNK)
            if not buf:
                break
            view = memoryview(buf)
            while view:
                view = view[os.write(fd, view):]


class SnapshotStore:
    def __init__(self, blobs: Path, manifests: Path, statcache: Path | None = None):
        self.blobs = Path(blobs)
        self.manifests = Path(manifests)
        self.statcache = Path(statcache) if statcache else self.manifests / "statcache"
        for d in (self.blobs, self.manifests, self.statcache):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lockfile = self.blobs / ".lock"
        self._dirs: set[str] = set()  # blob sub-folders known to exist
        self._umask = process_umask(-1)

    # -- locking ----------------------------------------------------------
    @contextmanager
    def hold(self, exclusive: bool = False) -> Iterator[None]:
        """Shared: snapshots being made stay safe from GC. Exclusive: GC."""
        fd = os.open(self._lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- paths --------------------------------------------------------------
    def blob_path(self, sha: str) -> Path:
        return self.blobs / sha[:2] / sha

    def manifest_path(self, snap_id: str) -> Path:
        if not snap_id or not all(c in "0123456789abcdef" for c in snap_id):
            raise SnapshotError(f"invalid snapshot id {snap_id!r}")
        return self.manifests / f"{snap_id}.json"

    def exists(self, snap_id: str) -> bool:
        return self.manifest_path(snap_id).exists()

    def manifest(self, snap_id: str) -> dict[str, list]:
        try:
            return json.loads(self.manifest_path(snap_id).read_text())["files"]
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {snap_id} is missing from {self.manifests}") from None

    # -- creating -----------------------------------------------------------
    def _cache_file(self, lab: Path) -> Path:
        return self.statcache / (hashlib.sha256(str(lab).encode()).hexdigest()[:32] + ".cache")

    @staticmethod
    def _load_cache(path: Path) -> dict[str, list]:
        """{rel: [size, mtime_ns, inode, sha256]}; marshal (loads and dumps 100,000
        entries ~5x faster than JSON); an earlier JSON cache is still read; anything
        unreadable is an empty cache (the files are hashed again)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
            cache = marshal.loads(data) if data[:1] != b"{" else json.loads(data)
        except FileNotFoundError:
            legacy = path.with_suffix(".json")
            return SnapshotStore._load_cache(legacy) if path.suffix == ".cache" and legacy.exists() else {}
        except (OSError, ValueError, EOFError, TypeError):
            return {}
        if not isinstance(cache, dict):
            return {}
        return cache

    def _dump_cache(self, path: Path, cache: dict[str, list]) -> None:
        write_bytes(path, marshal.dumps(cache))
        try:
            os.unlink(path.with_suffix(".json"))  # an earlier JSON cache of the same lab
        except FileNotFoundError:
            pass

    def _store_blob(self, path: Path) -> tuple[str, int]:
        """Hash ``path`` and keep its content as a blob if it is new.
        Returns (sha256, bytes newly stored)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, CHUNK)
            while 0 < len(data) < CHUNK:  # short reads of a small file
                more = os.read(fd, CHUNK - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
        if len(data) < CHUNK:  # a small file (most of a lab): one read, no temp copy
            return self._store_bytes(data)
        return self._store_stream(path)

    def _store_blobs(self, paths: list[str]) -> list[tuple[str, int]]:
        """``_store_blob`` of each path, in parallel when there are many (opening,
        reading, hashing and creating files release the GIL); a content met twice
        counts as new once."""
        n = min(MATERIALIZE_THREADS, len(paths) // 64)
        if n <= 1:
            out = [self._store_blob(Path(p)) for p in paths]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n, thread_name_prefix="snapshot") as pool:
                out = list(pool.map(lambda p: self._store_blob(Path(p)), paths, chunksize=32))
        seen: set[str] = set()
        for i, (sha, added) in enumerate(out):
            if added:
                if sha in seen:
                    out[i] = (sha, 0)
                seen.add(sha)
        return out

    def _blob_dir(self, sha: str) -> str:
        sub = f"{self.blobs}/{sha[:2]}"
        if sha[:2] not in self._dirs:
            try:
                os.mkdir(sub, 0o700)
            except FileExistsError:
                pass
            self._dirs.add(sha[:2])
        return sub

    def _store_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        sub = self._blob_dir(sha)
        target = f"{sub}/{sha}"
        if os.path.exists(target):
            return sha, 0
        tmp = f"{sub}/.in-{sha[:16]}-{os.getpid()}-{threading.get_ident()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o400)
            except FileNotFoundError:  # its sub-folder was removed since this store saw it
                self._dirs.discard(sha[:2])
                self._blob_dir(sha)
                fd = os.open(tmp, flags, 0o400)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self._umask & 0o400 or self._umask < 0:  # (created owner-only, never written again)
                    os.fchmod(fd, 0o400)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            unlink_quiet(tmp)
            raise
        return sha, len(data)

    def _store_stream(self, path: Path) -> tuple[str, int]:
        """A large file: hash it while copying it into a temp file; keep the copy if new."""
        h = hashlib.sha256()
        fd, tmp = mkstemp(self.blobs, ".in-")
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    dst.write(chunk)
            sha = h.hexdigest()
            target = f"{self._blob_dir(sha)}/{sha}"
            if os.path.exists(target):
                os.unlink(tmp)
                return sha, 0
            os.chmod(tmp, 0o400)  # owner-only, and never written again
            os.replace(tmp, target)
            return sha, os.stat(target).st_size
        except BaseException:
            unlink_quiet(tmp)
            raise

    def _walk(self, lab: Path, exclude: tuple[str, ...]) -> Iterator[tuple[str, os.DirEntry]]:
        # one regex for all the patterns (fnmatchcase of each, on the name and the path)
        match = re.compile("|".join(fnmatch.translate(p) for p in exclude)).match if exclude else None
        stack = [("", str(lab))]
        while stack:
            prefix, directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = list(it)  # (the manifest is sorted when written: no order needed)
            except PermissionError as exc:
                raise SnapshotError(f"cannot read {directory}: {exc.strerror}") from None
            for entry in entries:
                rel = prefix + entry.name
                if match is not None and (match(entry.name) or match(rel)):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                else:
                    yield rel, entry

    def create(self, lab: Path | str, exclude: Iterable[str] = ()) -> SnapshotInfo:
        """Snapshot ``lab``. Call inside ``hold()`` until the id is recorded."""
        lab = Path(lab).resolve()
        if not lab.is_dir():
            raise SnapshotError(f"lab folder {lab} does not exist")
        exclude = tuple(exclude)
        cache_path = self._cache_file(lab)
        cache = self._load_cache(cache_path)
        changed = False
        new_cache: dict[str, list] = {}
        files: dict[str, list] = {}
        pending: list[tuple[str, str, os.stat_result]] = []  # not in the cache: to hash and store
        total = new = 0
        for rel, entry in self._walk(lab, exclude):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                files[rel] = ["link", os.readlink(entry.path)]
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # fifos, sockets, devices are not lab content
            hit = cache.get(rel)
            if hit and type(hit) is list and len(hit) == 4 and hit[0] == st.st_size \
                    and hit[1] == st.st_mtime_ns and hit[2] == st.st_ino:
                # the blob is trusted: GC forgets the cache entries of the blobs it
                # removes, and materialising reports (and forgets) one found missing
                sha = hit[3]
                new_cache[rel] = hit
            else:
                pending.append((rel, entry.path, st))
                continue
            files[rel] = [sha, st.st_size, stat.S_IMODE(st.st_mode)]
            total += st.st_size
        for (rel, _, st), (sha, added) in zip(pending, self._store_blobs([p for _, p, _ in pending])):
            new += added
            new_cache[rel] = [st.st_size, st.st_mtime_ns, st.st_ino, sha]
            changed = True
            files[rel] = [sha, st.st_size, stat.S_IMODE(st.st_mode)]
            total += st.st_size
        body = json.dumps({"files": files}, sort_keys=True, separators=(",", ":"))
        snap_id = hashlib.sha256(body.encode()).hexdigest()[:24]
        target = self.manifest_path(snap_id)
        if target.exists():
            os.utime(target)
        else:
            write_bytes(target, body.encode())
        if changed or len(new_cache) != len(cache):  # (every hit is an entry of the old cache)
            self._dump_cache(cache_path, new_cache)
        return SnapshotInfo(snap_id, len(files), total, new)

    # -- reading back ---------------------------------------------------------
    def materialize(self, snap_id: str, dest: Path | str, *, owner_only: bool = False,
                    stats: dict | None = None) -> None:
        """Write the snapshot's files into ``dest`` (created; existing files overwritten).
        ``owner_only``: modes without group/other bits (a workspace in the store).

        Into a new (or empty) folder, the folders are made once from the manifest and
        the files are created in parallel (``MATERIALIZE_THREADS``), each written
        straight to its place: created with its mode (``O_EXCL``, no temp file and
        rename), filled with ``copy_file_range`` (a reflink where the file system can;
        never a hard link, so nothing a program changes can reach the store). A blob
        missing from the store raises :class:`SnapshotError` naming the file.
        ``stats``: filled with ``rel -> (sha, inode, ctime_ns)`` of the files written
        that way (see core/workspaces.py)."""
        dest = Path(dest)
        manifest = self.manifest(snap_id)
        try:
            os.mkdir(dest)
        except FileExistsError:
            if not dest.is_dir() or dest.is_symlink() or any(os.scandir(dest)):
                for rel, entry in manifest.items():  # into a folder with files: one by one
                    self._write_entry(dest, rel, entry, owner_only)
                return
        except FileNotFoundError:
            dest.mkdir(parents=True, exist_ok=True)
        self.fill(manifest, dest, owner_only=owner_only, stats=stats)

    def fill(self, manifest: dict[str, list], dest: Path | str, *, owner_only: bool,
             keep: "set[str] | dict" = frozenset(), stats: dict | None = None) -> None:
        """Write ``manifest`` into the folder ``dest``, which holds nothing of it but
        folders and the files in ``keep`` (checked by the caller)."""
        m = _Materializer(str(self.blobs), str(dest), owner_only, stats)
        try:
            m.run(manifest, keep)
        except SnapshotError:
            if m.missing:  # so that the next snapshot of its lab stores the file again
                self._forget_blobs({m.missing})
            raise

    def _write_entry(self, dest: Path, rel: str, entry: list, owner_only: bool = False) -> None:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or (target.exists() and entry[0] == "link"):
            target.unlink()
        if entry[0] == "link":
            os.symlink(entry[1], target)
            return
        blob = self.blob_path(entry[0])
        if not blob.exists():
            raise SnapshotError(f"blob {entry[0]} of {rel} is missing from the store")
        import shutil

        tmp = target.with_name(f".{target.name}.mldesk-tmp")
        shutil.copyfile(blob, tmp)
        os.chmod(tmp, file_mode(entry, owner_only))
        os.replace(tmp, target)

    def outside_links(self, snap_id: str) -> list[tuple[str, str]]:
        """(path, target) of the snapshot's symbolic links that point outside the lab."""
        out = []
        for rel, entry in sorted(self.manifest(snap_id).items()):
            if entry[0] != "link":
                continue
            target = entry[1]
            joined = os.path.normpath(os.path.join(os.path.dirname(rel), target))
            if os.path.isabs(target) or joined == ".." or joined.startswith("../"):
                out.append((rel, target))
        return out

    def export_entries(self, snap_id: str) -> list:
        """The snapshot as ``mldesk.core.export.Entry`` items (folders first)."""
        from mldesk.core.export import Entry

        manifest = self.manifest(snap_id)
        dirs: set[str] = set()
        for rel in manifest:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        out = [Entry(d, "dir") for d in sorted(dirs)]
        for rel, entry in sorted(manifest.items()):
            if entry[0] == "link":
                out.append(Entry(rel, "link", link_target=entry[1]))
                continue
            blob = self.blob_path(entry[0])
            if not blob.exists():
                raise SnapshotError(f"blob {entry[0]} of {rel} is missing from the store")
            out.append(Entry(rel, "file", mode=entry[2] & 0o777, write=_blob_writer(blob)))
        return out

    def read_file(self, snap_id: str, rel: str) -> bytes:
        entry = self.manifest(snap_id).get(rel)
        if entry is None or entry[0] == "link":
            raise SnapshotError(f"{rel} is not a file in snapshot {snap_id}")
        return self.blob_path(entry[0]).read_bytes()

    def restore(self, snap_id: str, lab: Path | str, exclude: Iterable[str] = (), *,
                backup: str | None = None) -> None:
        """Make ``lab`` equal to the snapshot, all or nothing.

        Paths matching ``exclude`` (any of their folders included) are never touched,
        on either side. Only files recorded in ``backup`` (a snapshot of the lab taken
        with the same ``exclude``; taken here when not given) are ever deleted or
        replaced. Everything is checked first (a conflict raises :class:`SnapshotError`
        before any change), every new file is staged inside the lab, and only then
        are the files swapped in with renames. Should a rename still fail, the lab is
        put back from ``backup``."""
        import shutil
        import tempfile

        lab = Path(lab).resolve()
        exclude = tuple(exclude)
        wanted = {rel: e for rel, e in self.manifest(snap_id).items() if not excluded_path(rel, exclude)}
        if backup is None:
            backup = self.create(lab, exclude).id
        have = self.manifest(backup)
        writes = sorted((rel for rel, e in wanted.items() if have.get(rel) != e), key=lambda r: (r.count("/"), r))
        deletes = sorted(rel for rel in have if rel not in wanted)
        rmdirs = self._check_restore(lab, wanted, have, writes, exclude)
        staging = Path(tempfile.mkdtemp(prefix=".mldesk-restore-", dir=lab))
        try:
            staged: dict[str, Path] = {}
            for i, rel in enumerate(writes):  # read every blob before touching the lab
                entry, tmp = wanted[rel], staging / str(i)
                if entry[0] == "link":
                    os.symlink(entry[1], tmp)
                else:
                    blob = self.blob_path(entry[0])
                    if not blob.exists():
                        raise SnapshotError(f"blob {entry[0]} of {rel} is missing from the store; nothing was changed")
                    shutil.copyfile(blob, tmp)
                    os.chmod(tmp, (entry[2] & 0o777) | stat.S_IWUSR)
                staged[rel] = tmp
            try:
                for rel in deletes:
                    try:
                        os.unlink(lab / rel)
                    except FileNotFoundError:
                        pass
                for rel in rmdirs:  # folders that become files or links: emptied above
                    _remove_empty_tree(lab / rel)
                for rel in writes:
                    target = lab / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged[rel], target)
            except OSError as exc:
                self._put_back(backup, lab, exclude, exc)
            # folders left empty by deletions (never excluded ones)
            for rel in sorted({str(Path(r).parent) for r in deletes}, key=len, reverse=True):
                d = lab / rel
                while d != lab and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                    d.rmdir()
                    d = d.parent
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _put_back(self, backup: str, lab: Path, exclude: tuple[str, ...], exc: OSError) -> None:
        where = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        try:
            for rel, entry in self.manifest(backup).items():
                self._write_entry(lab, rel, entry)
        except OSError:
            raise SnapshotError(f"restoring stopped halfway ({where}); the lab's earlier files are kept as "
                                f"backup {backup}: bring them back with `mldesk restore {backup}`") from None
        raise SnapshotError(f"restoring failed ({where}); the lab's files were put back as they were "
                            f"(backup {backup})") from None

    def _check_restore(self, lab: Path, wanted: dict, have: dict, writes: list[str],
                       exclude: tuple[str, ...]) -> list[str]:
        """Every conflict of a restore, found before anything changes; returns the
        folders that must go (emptied by the deletions) to make room for a file or link."""
        conflicts: list[str] = []
        rmdirs: list[str] = []
        checked: set[str] = set()
        doomed: set[str] = set()  # files/links above a target that the restore deletes
        for rel in writes:
            parts = rel.split("/")
            below_doomed = False
            for i in range(1, len(parts)):
                anc = "/".join(parts[:i])
                if anc in doomed:
                    below_doomed = True
                    break
                if anc in checked:
                    continue
                checked.add(anc)
                st = _lstat(lab / anc)
                if st is None or (stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode)):
                    continue
                if anc in have and anc not in wanted:
                    doomed.add(anc)  # a file or link of the lab that is deleted (it is in the backup)
                    below_doomed = True
                    break
                conflicts.append(f"{anc} is in the way of {rel} and is not part of the lab's files")
                below_doomed = True
                break
            if below_doomed:
                continue
            st = _lstat(lab / rel)
            if st is None or not stat.S_ISDIR(st.st_mode):
                if st is not None and rel not in have:
                    conflicts.append(f"{rel} exists but is not part of the lab's files (a special file?)")
                continue
            # a real folder where a file or link goes: everything in it must be deleted
            # by this restore (known to the backup, not excluded), or it stays as it is
            stray = []
            for dirpath, dirnames, filenames in os.walk(lab / rel):
                for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                    sub = os.path.relpath(os.path.join(dirpath, name), lab).replace(os.sep, "/")
                    if sub not in have or sub in wanted:
                        stray.append(sub)
                if len(stray) > 3:
                    break
            if stray:
                conflicts.append(f"{rel} is a folder holding files that would be lost ({', '.join(stray[:3])})")
            else:
                rmdirs.append(rel)
        if conflicts:
            raise SnapshotError("cannot restore: nothing was changed; "
                                + "; ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else ""))
        return sorted(rmdirs, key=len, reverse=True)

    # -- garbage collection ---------------------------------------------------
    def gc(self, in_use: "set[str] | Callable[[], set[str]]") -> tuple[int, int]:
        """Delete manifests not in ``in_use`` and blobs no manifest references.
        ``in_use`` may be a callable: it is then asked under the exclusive lock, so a
        snapshot recorded a moment ago by another process is counted.
        Returns (manifests removed, bytes freed)."""
        removed = freed = 0
        gone: set[str] = set()
        with self.hold(exclusive=True):
            if callable(in_use):
                in_use = in_use()
            referenced: set[str] = set()
            for path in self.manifests.glob("*.json"):
                snap_id = path.stem
                if snap_id not in in_use:
                    path.unlink()
                    removed += 1
                    continue
                for entry in json.loads(path.read_text())["files"].values():
                    if entry[0] != "link":
                        referenced.add(entry[0])
            for sub in self.blobs.iterdir():
                if not sub.is_dir():
                    continue
                for blob in sub.iterdir():
                    if blob.name not in referenced:
                        freed += blob.stat().st_size
                        blob.unlink()
                        gone.add(blob.name)
            if gone:
                self._forget_blobs(gone)
        return removed, freed

    def _forget_blobs(self, gone: set[str]) -> None:
        """Drop the stat-cache entries that point at blobs no longer in the store
        (snapshots trust a cache hit without looking for its blob)."""
        for path in [*self.statcache.glob("*.cache"), *self.statcache.glob("*.json")]:
            cache = self._load_cache(path)
            kept = {rel: v for rel, v in cache.items() if not (isinstance(v, list) and len(v) == 4 and v[3] in gone)}
            if len(kept) != len(cache):
                self._dump_cache(path.with_suffix(".cache"), kept)
