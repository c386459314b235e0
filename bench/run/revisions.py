"""Another git revision's packages, for benchmarks that run two revisions side by side in the
same run (``bench.worker_ab``, ``bench.pages``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class BenchError(Exception):
    """Why the run could not go on: one line for the user."""


@contextmanager
def revision_tree(rev: str | None, packages: Sequence[str], prefix: str) -> Iterator[Path]:
    """A temporary directory holding ``packages`` (paths in the repository) as they are in
    ``rev``, or this working tree itself for ``None``. It goes first on a child's ``PYTHONPATH``
    so the child imports that revision's code instead of the editable installs."""
    if rev is None:
        yield REPO
        return
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise BenchError(f"{rev!r} is not a commit of {REPO}")
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", found.stdout.strip(), *packages],
            capture_output=True, check=False,
        )  # fmt: skip
        if archive.returncode != 0:
            raise BenchError(f"{rev} has no {' or '.join(packages)}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def revision_label(rev: str | None) -> str:
    """How a table names ``rev``: its short commit id, or for ``None`` this working tree (its
    HEAD, and whether tracked files have uncommitted changes)."""
    if rev is None:
        dirty = " with uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
        return f"this tree ({_git('rev-parse', '--short=10', 'HEAD')}{dirty})"
    return _git("rev-parse", "--short=10", rev) or rev


def available(rev: str) -> str:
    """``rev`` when this clone has that commit, else ``HEAD`` (a shallow clone lacks old history:
    a smoke run then compares HEAD with itself)."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{rev}^{{commit}}"], check=False)
    return rev if found.returncode == 0 else "HEAD"
