"""Record which sources the committed prebuilt extension was built from.

``jlpm build:prod`` runs this after building: it writes the digest of every source file into
``ipcluster/server/labextension/sources.json``. ``tests/server/test_labextension_assets.py``
recomputes it, so a change to ``src/``, ``style/`` or the build config that was not followed by a
rebuild (and a commit of the new output) fails the tests instead of shipping stale JavaScript.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "ipcluster" / "server" / "labextension"
SOURCES = ("package.json", "tsconfig.json", "yarn.lock", "src", "style")


def source_files(root: Path = HERE) -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = root / name
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def sources_digest(root: Path = HERE) -> str:
    """sha256 over the relative path and bytes of each source file, in a fixed order."""
    h = hashlib.sha256()
    for path in source_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return h.hexdigest()


if __name__ == "__main__":
    stamp = {"sources_sha256": sources_digest(), "files": [p.relative_to(HERE).as_posix() for p in source_files()]}
    (OUTPUT / "sources.json").write_text(json.dumps(stamp, indent=1) + "\n")
    print(f"stamped {OUTPUT / 'sources.json'}", file=sys.stderr)
