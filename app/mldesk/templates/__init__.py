"""Lab templates for ``mldesk init`` and the New Lab dialog."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

TEMPLATES = {
    "empty": "An empty lab: a main.py that prints its arguments and a commented ml.yaml",
    "xor": "A tiny network learning XOR in plain Python, with metrics, outputs and a checkpoint on Stop",
}


def create_lab(dest: Path, template: str) -> Path:
    """Copy ``template`` into ``dest`` (created if needed); never overwrites a file."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}")
    dest = Path(dest)
    sources = [f for f in files(__name__).joinpath(template).iterdir() if f.is_file()]
    existing = sorted(f.name for f in sources if (dest / f.name).exists())
    if existing:
        raise ValueError(f"{dest} already has {', '.join(existing)}; choose an empty folder or move them away")
    dest.mkdir(parents=True, exist_ok=True)
    for source in sources:
        with open(dest / source.name, "xb") as f:
            f.write(source.read_bytes())
    return dest
