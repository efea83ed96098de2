"""Where a run came from: the code's git commit and a fingerprint of its input data.

Two MLflow runs can then be told apart (and matched) by what they ran on, not only by when.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

UNKNOWN = "unknown"
_CHUNK = 1 << 20


def git_commit(path: str | Path) -> tuple[str, bool]:
    """The commit checked out at ``path`` and whether tracked files differ from it.

    Returns ``("unknown", False)`` outside a git work tree or without git.
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, False
    return commit, bool(status.strip())


def data_fingerprint(folders: Iterable[str | Path]) -> str:
    """A content hash of every file under ``folders`` (16 hex digits).

    Each file contributes its path relative to its folder, its size and its bytes (BLAKE2b),
    in sorted order, so the fingerprint does not depend on where the data lives, on file
    times or on the order the file system lists them. Missing folders hash as empty.
    """
    digest = hashlib.blake2b(digest_size=8)
    for folder in folders:
        root = Path(folder)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        digest.update(f"folder:{len(files)}\n".encode())
        for file in files:
            digest.update(f"{file.relative_to(root).as_posix()}:{file.stat().st_size}\n".encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()
