"""A folder's entries as comparable values, for tests that check a tree equals another."""

from __future__ import annotations

import os
import stat


def tree(root, *, detail: bool = False) -> dict:
    """Every path under ``root``: ("link", target), ("dir",) and ("file", mode bits,
    content). ``detail``: folders' modes and files' link counts too, and other kinds
    of entries as ("other", mode)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode)) if detail else ("dir",)
            elif detail and not stat.S_ISREG(st.st_mode):
                out[rel] = ("other", st.st_mode)
            else:
                with open(path, "rb") as f:
                    data = f.read()
                out[rel] = ("file", st.st_mode & 0o7777, st.st_nlink, data) if detail else \
                    ("file", st.st_mode & 0o7777, data)
    return out
