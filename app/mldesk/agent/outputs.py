"""Collect an execution's ``outputs/`` folder (SPEC 6).

Standard library only, Python >= 3.8: this file is also shipped to SSH hosts and run
there by their own ``python3``.

The tree under ``src_dir`` is copied into ``dest_dir`` keeping relative paths.
Symbolic links are never followed nor copied (each is reported), and nothing outside
``src_dir`` is ever opened: where the platform allows it the walk opens every folder
and file relative to its parent's descriptor with ``O_NOFOLLOW``, so a link swapped in
while we walk is refused by the kernel rather than followed. FIFOs, sockets and
devices are skipped with a reason. Optional limits (per-file size, file count, total
size) skip files with a console line each. Each copy is written to a temporary name
and renamed, with the source's mtime; with ``incremental`` a file whose size and
mtime equal the copy already there is not copied again (periodic sync while running).
Files that disappear from ``src_dir`` are kept in ``dest_dir`` (nothing already
collected is lost).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from typing import Callable, List, NamedTuple, Optional

from mldesk.agent import protocol
from mldesk.agent.fsutil import human_bytes, mkstemp

__all__ = ["CollectResult", "CollectError", "collect_outputs", "send_outputs"]

CHUNK = 1 << 20
MAX_DEPTH = 128
TMP_MARK = ".mldesk-tmp-"
_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT (Windows symlinks and junctions)

_FD_WALK = (
    hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")
    and os.open in os.supports_dir_fd and os.scandir in os.supports_fd
    and os.stat in os.supports_dir_fd
)


class CollectResult(NamedTuple):
    files: int  # files in dest_dir from this collection (copied now or unchanged)
    bytes: int  # their total size
    skipped: list  # [(relpath, reason)]
    copied: int = 0  # files actually copied by this call


class CollectError(OSError):
    """A failure that stops the collection (a full disk, an unwritable destination).
    ``str()`` is just the message."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _is_link(st: os.stat_result) -> bool:
    return stat.S_ISLNK(st.st_mode) or bool(getattr(st, "st_file_attributes", 0) & _REPARSE_POINT)


def _copy_fd(src_fd: int, dst_fd: int, size: int) -> int:
    """Copy at most ``size`` bytes (the size when the file was opened: a file still
    being appended to is copied as it was then). Returns the bytes copied."""
    done = 0
    while done < size:
        try:
            buf = os.read(src_fd, min(CHUNK, size - done))
        except OSError as exc:
            raise _SourceError(exc)
        if not buf:
            break  # truncated meanwhile
        view = memoryview(buf)
        while view:
            n = os.write(dst_fd, view)
            view = view[n:]
        done += len(buf)
    return done


def copy_sparse(src_fd: int, dst_fd: int, size: int) -> int:
    """Like :func:`_copy_fd`, but holes in the source stay holes in the copy (where
    the platform can say where they are: ``SEEK_DATA``/``SEEK_HOLE``). Both
    descriptors must be at offset 0. Returns the size of the copy."""
    if not (hasattr(os, "SEEK_DATA") and hasattr(os, "SEEK_HOLE")) or size <= 0:
        return _copy_fd(src_fd, dst_fd, size)
    try:
        first = os.lseek(src_fd, 0, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # all hole (or empty)
            os.ftruncate(dst_fd, size)
            return size
        return _copy_fd(src_fd, dst_fd, size)  # not supported by this file system
    pos = first
    end = 0
    while pos < size:
        hole = min(os.lseek(src_fd, pos, os.SEEK_HOLE), size)
        os.lseek(src_fd, pos, os.SEEK_SET)
        os.lseek(dst_fd, pos, os.SEEK_SET)
        got = _copy_fd(src_fd, dst_fd, hole - pos)
        end = pos + got
        if got < hole - pos:
            break  # truncated meanwhile
        try:
            pos = os.lseek(src_fd, hole, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise _SourceError(exc)
            end = size
            break
    else:
        end = size
    os.ftruncate(dst_fd, end)
    return end


LINK_REASON = "symbolic link (links are not followed)"


class _SourceError(Exception):
    """Reading the source failed (the file is skipped, the collection goes on)."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class _Visitor:
    """What the walk calls: ``folder(rel)`` on entering a folder ("" is the root),
    ``file(rel, fd, rel_dir, name)`` for each regular file (an open descriptor),
    ``skip(rel, reason)`` for everything not taken. Keeps the totals and the limits."""

    def __init__(self, src: str, max_files, max_file_bytes, max_total_bytes, on_message):
        self.src = src
        self.label = os.path.basename(os.path.normpath(src)) or "outputs"
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.on_message = on_message
        self.files = 0
        self.bytes = 0
        self.copied = 0
        self.skipped = []  # type: list  # [(relpath, reason)]

    def display(self, rel: str) -> str:
        text = self.label + "/" + rel if rel else self.label
        # names that are not valid UTF-8 (surrogate escapes) must not break a log line
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

    def message(self, line: str) -> None:
        if self.on_message is not None:
            self.on_message(line)

    def skip(self, rel: str, reason: str) -> None:
        self.skipped.append((rel, reason))
        self.message("skipped %s: %s" % (self.display(rel), reason))

    def folder(self, rel: str) -> None:
        pass

    # -- limits
    def over_limit(self, size: int) -> Optional[str]:
        if self.max_file_bytes is not None and size > self.max_file_bytes:
            return "%s is over the per-file limit of %s" % (human_bytes(size), human_bytes(self.max_file_bytes))
        if self.max_files is not None and self.files >= self.max_files:
            return "over the limit of %d files" % self.max_files
        if self.max_total_bytes is not None and self.bytes + size > self.max_total_bytes:
            return "%s would go over the total size limit of %s (%s collected)" % (
                human_bytes(size), human_bytes(self.max_total_bytes), human_bytes(self.bytes))
        return None

    def admit(self, rel: str, fd: int):
        """The ``fstat`` of a file that may be taken (a regular file within the limits),
        else None after saying why it is skipped."""
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            self.skip(rel, "not a regular file (%s)" % _kind(fst.st_mode))
            return None
        reason = self.over_limit(fst.st_size)
        if reason is not None:
            self.skip(rel, reason)
            return None
        return fst

    def file(self, rel: str, fd: int, rel_dir: str, name: str) -> None:
        raise NotImplementedError


class _Collector(_Visitor):
    """Copies into a local folder (``collect_outputs``)."""

    def __init__(self, src: str, dest: str, max_files, max_file_bytes, max_total_bytes,
                 on_message, incremental: bool):
        super().__init__(src, max_files, max_file_bytes, max_total_bytes, on_message)
        self.dest = dest
        self.incremental = incremental
        self._ready = {}  # type: dict

    def folder(self, rel: str) -> None:
        self.dest_dir_ready(rel)

    # -- destination side (our own folder: plain paths)
    def dest_dir_ready(self, rel: str) -> str:
        """The destination folder for ``rel``, created (once per collection)."""
        path = self._ready.get(rel)
        if path is not None:
            return path
        path = self._make_dest_dir(rel)
        self._ready[rel] = path
        return path

    def _make_dest_dir(self, rel: str) -> str:
        path = os.path.join(self.dest, *rel.split("/")) if rel else self.dest
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and not _is_link(st):
                self.sweep(path)
                return path
            _remove(path, st)  # a file or link where a folder belongs now
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self.write_error(exc, rel, path)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise self.write_error(exc, rel, path)
        return path

    @staticmethod
    def sweep(path: str) -> None:
        """Remove temporary files a killed earlier collection left behind."""
        try:
            with os.scandir(path) as it:
                for e in it:
                    if e.name.startswith(".") and TMP_MARK in e.name and e.is_file(follow_symlinks=False):
                        try:
                            os.unlink(e.path)
                        except OSError:
                            pass
        except OSError:
            pass

    def write_error(self, exc: OSError, rel: str, path: str) -> CollectError:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return CollectError(errno.ENOSPC, "disk full while collecting %s: free space on %s"
                                % (self.display(rel), self.dest))
        return CollectError(exc.errno or errno.EIO, "cannot write %s while collecting %s: %s"
                            % (path, self.display(rel), exc.strerror or exc))

    # -- one file, given an open descriptor of the source
    def file(self, rel: str, fd: int, rel_dir: str, name: str) -> None:
        dest_parent = self.dest_dir_ready(rel_dir)
        fst = self.admit(rel, fd)
        if fst is None:
            return
        size = fst.st_size
        target = os.path.join(dest_parent, name)
        try:
            dst = os.lstat(target)
        except OSError:
            dst = None
        if (self.incremental and dst is not None and stat.S_ISREG(dst.st_mode)
                and dst.st_size == size and dst.st_mtime_ns == fst.st_mtime_ns):
            self.files += 1
            self.bytes += size
            return
        prefix = "." + name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore") + TMP_MARK
        try:
            out, tmp = mkstemp(dest_parent, prefix)
        except OSError as exc:
            raise self.write_error(exc, rel, dest_parent)
        try:
            try:
                copied = copy_sparse(fd, out, size)
            finally:
                os.close(out)
            # owner-only, and never set-uid / set-gid / sticky (SPEC 10a)
            os.chmod(tmp, (stat.S_IMODE(fst.st_mode) & 0o700) | 0o600)
            os.utime(tmp, ns=(fst.st_atime_ns, fst.st_mtime_ns))
            if dst is not None and stat.S_ISDIR(dst.st_mode):
                _remove(target, dst)
            os.replace(tmp, target)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise self.write_error(exc, rel, target)
        except _SourceError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            self.skip(rel, _read_error(exc.error))
            return
        self.files += 1
        self.bytes += copied
        self.copied += 1

    def result(self) -> CollectResult:
        return CollectResult(self.files, self.bytes, self.skipped, self.copied)


def _remove(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode) and not _is_link(st):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def _read_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return LINK_REASON
    if exc.errno == errno.ENOENT:
        return "vanished while collecting"
    return "cannot read: %s" % (exc.strerror or exc)


# -- walking the source ----------------------------------------------------------------

_O_FILE = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
    | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_DIRECTORY", 0) \
    | getattr(os, "O_CLOEXEC", 0)


def _walk_fd(c: _Visitor) -> None:
    try:
        root = os.open(c.src, _O_DIR)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        if exc.errno == errno.ELOOP or _lstat_is_link(c.src):
            c.skip("", LINK_REASON)  # O_DIRECTORY|O_NOFOLLOW on a link: ELOOP or ENOTDIR
        elif exc.errno == errno.ENOTDIR:
            c.skip("", "not a folder")
        else:
            c.skip("", _read_error(exc))
        return
    # iterative depth-first walk; each level keeps its folder's descriptor open
    stack = []  # type: List[list]
    try:
        c.folder("")
        stack.append([root, "", _list(root), 0])
        while stack:
            frame = stack[-1]
            dfd, rel_dir, entries, i = frame
            if i >= len(entries):
                stack.pop()
                os.close(dfd)
                continue
            frame[3] = i + 1
            name, st = entries[i]
            rel = rel_dir + "/" + name if rel_dir else name
            if st is None:
                c.skip(rel, "vanished while collecting")
                continue
            if _is_link(st):
                c.skip(rel, LINK_REASON)
            elif stat.S_ISDIR(st.st_mode):
                if len(stack) > MAX_DEPTH:
                    c.skip(rel, "nested more than %d folders deep" % MAX_DEPTH)
                    continue
                try:
                    sub = os.open(name, _O_DIR, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno == errno.ENOTDIR:
                        c.skip(rel, LINK_REASON if _lstat_is_link(name, dfd) else "changed while collecting")
                    else:
                        c.skip(rel, _read_error(exc))
                    continue
                try:
                    c.folder(rel)
                    entries_sub = _list(sub)
                except BaseException:
                    os.close(sub)
                    raise
                stack.append([sub, rel, entries_sub, 0])
            elif stat.S_ISREG(st.st_mode):
                try:
                    fd = os.open(name, _O_FILE, dir_fd=dfd)
                except OSError as exc:
                    c.skip(rel, _read_error(exc))
                    continue
                try:
                    c.file(rel, fd, rel_dir, name)
                except CollectError:
                    raise
                except OSError as exc:  # reading the source
                    c.skip(rel, _read_error(exc))
                finally:
                    os.close(fd)
            else:
                c.skip(rel, "not a regular file (%s)" % _kind(st.st_mode))
    finally:
        for frame in stack:
            try:
                os.close(frame[0])
            except OSError:
                pass


def _lstat_is_link(path, dir_fd=None) -> bool:
    try:
        if dir_fd is None:
            return _is_link(os.lstat(path))
        return _is_link(os.stat(path, dir_fd=dir_fd, follow_symlinks=False))
    except OSError:
        return False


def _list(dfd) -> List[tuple]:
    """(name, lstat) of a folder's entries, sorted by name (lstat None: vanished)."""
    out = []
    with os.scandir(dfd) as it:
        for e in it:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                st = None
            out.append((e.name, st))
    out.sort(key=lambda x: x[0])
    return out


def _walk_paths(c: _Visitor) -> None:
    """Fallback where folders cannot be opened relative to a descriptor (Windows):
    lstat before opening and compare identities after."""
    try:
        st = os.lstat(c.src)
    except FileNotFoundError:
        return
    if _is_link(st):
        c.skip("", LINK_REASON)
        return
    if not stat.S_ISDIR(st.st_mode):
        c.skip("", "not a folder")
        return
    c.folder("")
    stack = [("", 0)]
    while stack:
        rel_dir, depth = stack.pop()
        path = os.path.join(c.src, *rel_dir.split("/")) if rel_dir else c.src
        try:
            entries = _list(path)
        except OSError as exc:
            c.skip(rel_dir, _read_error(exc))
            continue
        subdirs = []
        for name, est in entries:
            rel = rel_dir + "/" + name if rel_dir else name
            full = os.path.join(path, name)
            if est is None:
                c.skip(rel, "vanished while collecting")
            elif _is_link(est):
                c.skip(rel, LINK_REASON)
            elif stat.S_ISDIR(est.st_mode):
                if depth >= MAX_DEPTH:
                    c.skip(rel, "nested more than %d folders deep" % MAX_DEPTH)
                else:
                    c.folder(rel)
                    subdirs.append((rel, depth + 1))
            elif stat.S_ISREG(est.st_mode):
                try:
                    fd = os.open(full, _O_FILE)
                except OSError as exc:
                    c.skip(rel, _read_error(exc))
                    continue
                try:
                    fst = os.fstat(fd)
                    if est.st_ino and (fst.st_ino, fst.st_dev) != (est.st_ino, est.st_dev):
                        c.skip(rel, "changed while collecting")
                        continue
                    c.file(rel, fd, rel_dir, name)
                except CollectError:
                    raise
                except OSError as exc:
                    c.skip(rel, _read_error(exc))
                finally:
                    os.close(fd)
            else:
                c.skip(rel, "not a regular file (%s)" % _kind(est.st_mode))
        stack.extend(reversed(subdirs))


class _Sender(_Visitor):
    """Sends the files that differ from what the receiver has as typed frames
    (``protocol.FILE``/``DATA``/``FILE_END``, ``FOLDER``, ``SKIP``; the agent's
    ``outputs`` command, read by the SSH runtime)."""

    def __init__(self, src: str, write, have: dict, max_files, max_file_bytes, max_total_bytes):
        super().__init__(src, max_files, max_file_bytes, max_total_bytes, None)
        self.write = write
        self.have = have
        self.sent_bytes = 0

    def skip(self, rel: str, reason: str) -> None:
        self.skipped.append((rel, reason))
        self.write(protocol.SKIP, json.dumps({"path": rel, "reason": reason}).encode())

    def folder(self, rel: str) -> None:
        if rel:
            self.write(protocol.FOLDER, json.dumps({"path": rel}).encode())

    def file(self, rel: str, fd: int, rel_dir: str, name: str) -> None:
        fst = self.admit(rel, fd)
        if fst is None:
            return
        size = fst.st_size
        self.files += 1
        self.bytes += size
        if self.have.get(rel) == [size, fst.st_mtime_ns]:
            return
        self.write(protocol.FILE, json.dumps({"path": rel, "size": size, "mtime_ns": fst.st_mtime_ns,
                                              "mode": stat.S_IMODE(fst.st_mode)}).encode())
        done = 0
        error = None
        while done < size:
            try:
                buf = os.read(fd, min(CHUNK, size - done))
            except OSError as exc:
                error = "cannot read: %s" % (exc.strerror or exc)
                break
            if not buf:
                break  # truncated meanwhile: what was there
            self.write(protocol.DATA, buf)
            done += len(buf)
        self.write(protocol.FILE_END, json.dumps({"ok": error is None, "size": done, "error": error}).encode())
        self.copied += 1
        self.sent_bytes += done


def send_outputs(src_dir, write, *, have=None, max_files=None, max_file_bytes=None,
                 max_total_bytes=None) -> dict:
    """Walk ``src_dir`` exactly like :func:`collect_outputs` and hand the files that
    differ from ``have`` ({relpath: [size, mtime_ns]}) to ``write(kind, payload)`` as
    typed frames; the last frame is ``TOTALS``, whose dict is also returned."""
    c = _Sender(os.path.abspath(os.fspath(src_dir)), write, have or {}, max_files, max_file_bytes,
                max_total_bytes)
    if _FD_WALK:
        _walk_fd(c)
    else:
        _walk_paths(c)
    totals = {"files": c.files, "bytes": c.bytes, "sent": c.copied, "sent_bytes": c.sent_bytes}
    write(protocol.TOTALS, json.dumps(totals).encode())
    return totals


def strip_special_bits(root, owner_only: bool = True) -> int:
    """Remove set-uid / set-gid bits (and with ``owner_only`` group and other bits)
    from every file and folder under ``root`` (links are not followed). Returns how
    many were changed."""
    drop = stat.S_ISUID | stat.S_ISGID | (0o077 if owner_only else 0)
    changed = 0
    for dirpath, dirnames, filenames in os.walk(os.fspath(root), followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & drop:
                    os.chmod(path, stat.S_IMODE(st.st_mode) & ~drop)
                    changed += 1
            except OSError:
                pass
    return changed


def collect_outputs(src_dir, dest_dir, *, max_files: Optional[int] = None,
                    max_file_bytes: Optional[int] = None, max_total_bytes: Optional[int] = None,
                    on_message: Optional[Callable[[str], None]] = None,
                    incremental: bool = True) -> CollectResult:
    """Copy the tree under ``src_dir`` into ``dest_dir`` (see the module doc).

    Raises :class:`CollectError` (an ``OSError``; errno ENOSPC for a full disk) when
    the destination cannot be written; the partial copy of the file being written is
    removed, files collected before stay."""
    src = os.path.abspath(os.fspath(src_dir))
    dest = os.path.abspath(os.fspath(dest_dir))
    real_src, real_dest = os.path.realpath(src), os.path.realpath(dest)
    if real_dest == real_src or real_dest.startswith(real_src.rstrip(os.sep) + os.sep):
        raise ValueError("the destination %s is inside the folder being collected" % dest)
    c = _Collector(src, dest, max_files, max_file_bytes, max_total_bytes, on_message, incremental)
    if _FD_WALK:
        _walk_fd(c)
    else:
        _walk_paths(c)
    return c.result()


if __name__ == "__main__":  # pragma: no cover - used on remote hosts
    # python3 outputs.py SRC DEST [MAX_FILES MAX_FILE_BYTES MAX_TOTAL_BYTES]  ('-' = no limit)
    def _num(i):
        v = sys.argv[i] if len(sys.argv) > i else "-"
        return None if v == "-" else int(v)

    def _print(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        r = collect_outputs(sys.argv[1], sys.argv[2], max_files=_num(3), max_file_bytes=_num(4),
                            max_total_bytes=_num(5), on_message=_print)
    except OSError as _exc:
        sys.stderr.write(str(_exc) + "\n")
        sys.exit(1)
    _print(json.dumps({"files": r.files, "bytes": r.bytes, "copied": r.copied, "skipped": r.skipped}))
