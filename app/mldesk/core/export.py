"""Copy a tree of files into a user's folder without ever destroying what is there.

Used by ``mldesk outputs --to``, ``mldesk code --to`` and the window's equivalents
(through the engine). The rules (SPEC 10a):

- Nothing already at the destination is deleted. Files go to new names only; a name
  that is taken is a *conflict*. Without ``overwrite`` every conflict is found
  before anything is written, and the export stops, listing them. ``overwrite`` may
  replace existing *files* (never folders, never through a link in the way).
- A link or a file where a folder has to be is a conflict (we never write through a
  symbolic link into some other place, and never turn a file into a folder).
- The destination itself must be a folder (or not exist yet).
- Each file is written to a temporary name in its folder and linked into place with
  ``os.link`` (which fails when the name was taken meanwhile), so a race never
  clobbers a file either.
- Set-uid / set-gid / sticky bits never come along; sparse files stay sparse.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from mldesk.agent.errors import UserError
from mldesk.agent.fsutil import process_umask, unlink_quiet
from mldesk.agent.outputs import copy_sparse

MAX_LISTED = 20


class ExportError(UserError):
    """A refused export (conflicts, a file given as the folder...); nothing was written."""


class ExportConflict(ExportError):
    def __init__(self, dest: Path, conflicts: list[str]):
        self.dest = dest
        self.conflicts = conflicts
        shown = "\n".join("  " + c for c in conflicts[:MAX_LISTED])
        more = f"\n  ... and {len(conflicts) - MAX_LISTED} more" if len(conflicts) > MAX_LISTED else ""
        super().__init__(
            f"{len(conflicts)} name(s) in {dest} are already taken; nothing was copied "
            f"(choose an empty folder, or pass --overwrite to replace files):\n{shown}{more}")

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class Entry:
    rel: str          # "a/b.txt", "/"-separated
    kind: str         # "dir" | "file" | "link"
    mode: int = 0o644
    link_target: str = ""
    # writes the content to an open descriptor; returns bytes written
    write: Callable[[int], int] | None = field(default=None, repr=False)


@dataclass
class ExportResult:
    files: int = 0
    bytes: int = 0
    replaced: list[str] = field(default_factory=list)


def safe_name(text: str) -> str:
    """A path for a console line: control characters (and the undecodable) escaped."""
    out = []
    for ch in text:
        o = ord(ch)
        if o < 32 or o == 127 or 0x80 <= o < 0xA0 or 0xDC80 <= o <= 0xDCFF or ch in _BIDI:
            out.append("\\x%02x" % (o & 0xFF) if o < 0x100 or 0xDC80 <= o <= 0xDCFF else "\\u%04x" % o)
        else:
            out.append(ch)
    return "".join(out)


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def check_destination(dest: Path, forbidden: Iterable[tuple[Path, str]]) -> Path:
    """``dest`` made absolute; refuses a file, and folders inside ``forbidden``
    (pairs of (folder, what it is))."""
    dest = Path(os.path.abspath(os.path.expanduser(os.fspath(dest))))
    if os.path.lexists(dest) and not dest.is_dir():
        raise ExportError(f"{dest} is a file, not a folder: give a folder (new or existing) to copy into")
    real = Path(os.path.realpath(dest))
    for folder, what in forbidden:
        folder = Path(os.path.realpath(folder))
        if real == folder or folder in real.parents:
            raise ExportError(f"{dest} is inside {what} ({folder}); choose a folder outside it")
    return dest


def _lstat(path: Path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def find_conflicts(entries: list[Entry], dest: Path, overwrite: bool) -> list[str]:
    conflicts: list[str] = []
    seen_dirs: dict[str, bool] = {}  # rel dir -> exists as a real folder or will be created

    def dir_ok(rel_dir: str) -> bool:
        """Can ``rel_dir`` be (or become) a real folder under dest?"""
        if rel_dir in ("", "."):
            return True
        if rel_dir in seen_dirs:
            return seen_dirs[rel_dir]
        parent = rel_dir.rsplit("/", 1)[0] if "/" in rel_dir else ""
        ok = dir_ok(parent)
        if ok:
            st = _lstat(dest / rel_dir)
            if st is not None and not stat.S_ISDIR(st.st_mode):  # a file or a link (even to a folder)
                kind = "a link" if stat.S_ISLNK(st.st_mode) else "a file"
                conflicts.append(f"{rel_dir} (needed as a folder, but {kind} is there)")
                ok = False
        seen_dirs[rel_dir] = ok
        return ok

    for e in entries:
        if e.kind == "dir":
            dir_ok(e.rel)
            continue
        parent = e.rel.rsplit("/", 1)[0] if "/" in e.rel else ""
        if not dir_ok(parent):
            continue
        st = _lstat(dest / e.rel)
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            conflicts.append(f"{e.rel} (a folder is there; folders are never replaced)")
        elif not overwrite:
            conflicts.append(f"{e.rel} (already exists)")
    return conflicts


def export_tree(entries: list[Entry], dest: Path, *, overwrite: bool = False) -> ExportResult:
    """Write ``entries`` under ``dest`` (see the module doc). Raises
    :class:`ExportConflict` before writing anything when a name is taken."""
    dest = Path(dest)
    conflicts = find_conflicts(entries, dest, overwrite)
    if conflicts:
        raise ExportConflict(dest, conflicts)
    result = ExportResult()
    dest.mkdir(parents=True, exist_ok=True)
    for e in entries:
        target = dest / e.rel
        if e.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = _lstat(target) is not None
        if e.kind == "link":
            tmp = target.with_name(".%s.mldesk-%d" % (target.name[:100], os.getpid()))
            unlink_quiet(tmp)
            os.symlink(e.link_target, tmp)
            _install(tmp, target, overwrite, e.rel, dest)
        else:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix="." + target.name[:100] + ".mldesk-")
            try:
                try:
                    result.bytes += e.write(fd) if e.write else 0
                finally:
                    os.close(fd)
                os.chmod(tmp, _user_mode(e.mode))
                _install(Path(tmp), target, overwrite, e.rel, dest)
            except BaseException:
                unlink_quiet(tmp)
                raise
            result.files += 1
        if existed:
            result.replaced.append(e.rel)
    return result


def _user_mode(mode: int) -> int:
    """A new file in the user's folder: what ``cp`` would give it (the user's umask;
    executable if it was); never set-uid/set-gid."""
    base = 0o777 if mode & 0o100 else 0o666
    return (base & ~process_umask(0o022)) | stat.S_IRUSR | stat.S_IWUSR


def _install(tmp: Path, target: Path, overwrite: bool, rel: str, dest: Path) -> None:
    try:
        if overwrite:
            st = _lstat(target)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise ExportConflict(dest, [f"{rel} (a folder appeared there meanwhile)"])
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target, follow_symlinks=False)
            except FileExistsError:
                raise ExportConflict(dest, [f"{rel} (appeared there meanwhile)"]) from None
            os.unlink(tmp)
    except BaseException:
        unlink_quiet(tmp)
        raise


def tree_entries(root: Path) -> list[Entry]:
    """The files and folders under ``root`` (a folder of ours): links are not
    followed (they are skipped), nor are special files."""
    root = Path(root)
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                continue
            out.append(Entry(f"{rel_dir}/{name}" if rel_dir else name, "dir"))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            out.append(Entry(f"{rel_dir}/{name}" if rel_dir else name, "file",
                             mode=stat.S_IMODE(st.st_mode) & 0o777, write=_file_writer(full)))
    return out


def _file_writer(path: str) -> Callable[[int], int]:
    def write(out_fd: int) -> int:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            return copy_sparse(fd, out_fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    return write


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
