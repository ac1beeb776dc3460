# PyInstaller runtime hook: runs in the frozen app only, before mldesk is imported.
#
# Some PyInstaller bootloaders prepend the bundle's library folder to
# LD_LIBRARY_PATH (keeping the user's value in LD_LIBRARY_PATH_ORIG) so that the
# bundle's own libraries win. Programs that mldesk starts (the user's python3,
# docker, nvidia-smi, ssh, xdg-open, ...) must see the user's environment instead,
# or they would load the bundle's copies of libssl, libstdc++, Qt... The dynamic
# loader read LD_LIBRARY_PATH when this process started, so changing it here
# changes nothing for the bundle itself; a supervisor re-executes the bundle,
# whose bootloader sets it up again.
import os
import sys


def _restore_library_path(name="LD_LIBRARY_PATH"):
    bundle = getattr(sys, "_MEIPASS", None)
    value = os.environ.get(name)
    orig = os.environ.pop(name + "_ORIG", None)
    if not bundle or value is None:
        return
    if orig is not None:
        os.environ[name] = orig
        return
    kept = [p for p in value.split(os.pathsep)
            if p and os.path.realpath(p) != os.path.realpath(bundle)]
    if kept:
        os.environ[name] = os.pathsep.join(kept)
    else:
        del os.environ[name]


if sys.platform.startswith("linux"):
    _restore_library_path()
