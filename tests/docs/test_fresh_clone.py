"""The README's and the guides' commands, run literally as a newcomer would: a copy of the
repository in a temporary folder, fresh virtual environments, a real redis-server with a
password and an ACL user, stores named by relative paths used from another folder.

Each block marked ``<!-- doctest: NAME -->`` runs unchanged under ``bash -e``; the assertions
check that it did what the text around it says. Speed: pip takes packages from this machine's
local index mirror when there is one (``/opt/pypi/simple``), the package index otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_blocks import REPO, doc_blocks
from iii_state_testsupport.redis import AclUser, RedisServer

BLOCKS = doc_blocks("bash")
LOCAL_INDEX = Path("/opt/pypi/simple")
PASSWORD = "pa#ss word"  # what the README's example exports: a '#' and a space


def _environment(clone: Path) -> dict[str, str]:
    skip = ("III_", "VIRTUAL_ENV", "PYTHON", "REDIS_")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    base_python = Path(sys.base_prefix) / "bin"  # `python` as on a machine without our venv
    shims = clone.parent / "shims"
    shims.mkdir(exist_ok=True)
    if not (shims / "python").exists():
        (shims / "python").symlink_to(Path(sys._base_executable))  # type: ignore[attr-defined]
    keep["PATH"] = os.pathsep.join([str(shims), str(base_python), keep.get("PATH", "")])
    keep["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    keep["PIP_NO_COMPILE"] = "1"  # no .pyc at install time: this test imports little
    if LOCAL_INDEX.is_dir():
        keep["PIP_INDEX_URL"] = LOCAL_INDEX.as_uri()
    return keep


def run_block(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path, code = BLOCKS[name]
    done = subprocess.run(
        ["bash", "-e", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        f"{path.name} block {name!r} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's files as git knows them: what a fresh clone holds."""
    root = tmp_path_factory.mktemp("newcomer") / "iii-state"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not name.startswith((".venv", ".tools")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


@pytest.fixture(scope="module")
def installed(clone: Path) -> dict[str, str]:
    """README "Install", today's form: the block's own venv in the clone, activated."""
    env = _environment(clone)
    run_block("install-from-checkout", clone, env)
    venv = clone / ".venv"
    env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(venv)}
    listed = subprocess.run(
        ["pip", "list", "--format=freeze"], env=env, capture_output=True, text=True
    ).stdout
    assert {"iii-state-core", "iii-state-kvfile", "iii-state-redis", "iii-state-conformance"} <= {
        line.split("==")[0] for line in listed.splitlines()
    }
    return env


@pytest.fixture(scope="module")
def redis_acl() -> Iterator[RedisServer]:
    # the README's rules, word for word (a read script also names the deadline keys)
    rules = "~state:* ~*iii-ttl*:state:* +@hash +@sortedset +@scripting +sadd +smembers +scan +info"
    with RedisServer(
        acl_users=[AclUser("app", PASSWORD, rules)], extra_config=["user default off"]
    ) as server:
        yield server


def test_installed_from_the_clone_the_embedded_default_is_there(
    installed: dict[str, str], tmp_path: Path
) -> None:
    plugins = subprocess.run(["iii-state", "plugins"], env=installed, capture_output=True, text=True)
    assert plugins.returncode == 0 and "kv" in plugins.stdout and "redis" in plugins.stdout
    done = subprocess.run(
        ["iii-state", "set", "s", "k", "1"], cwd=tmp_path, env=installed, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "state_store" / "state.sqlite3").is_file()


def test_redis_acl_then_kv_to_redis_to_kv_from_the_parent_folder(
    installed: dict[str, str], redis_acl: RedisServer, tmp_path: Path
) -> None:
    info = redis_acl.info
    env = {**installed, "REDIS_HOST": info.host, "REDIS_PORT": str(info.port)}
    # the README block exports this very password; the server was started with it
    _, readme_code = BLOCKS["redis-acl"]
    assert f"export REDIS_PASSWORD='{PASSWORD}'" in readme_code
    checked = run_block("redis-acl", tmp_path, env)
    assert checked.stdout.splitlines()[-1].startswith("ok: set, get, update, delete and list_keys work")
    assert f"store: redis at {info.host}:{info.port} (db 0, prefix 'state:')" in checked.stderr
    assert "pa#ss" not in checked.stdout + checked.stderr
    env["REDIS_PASSWORD"] = PASSWORD
    moved = run_block("migrate-kv-redis-kv", tmp_path, env)
    assert moved.stdout.splitlines()[-1] == '{"visits":3}'
    assert moved.stdout.count("1 scopes, 2 entries: written 2") == 2, moved.stdout
    assert moved.stdout.count("verified: all 1 scopes match") == 2
    assert f"from: kv (file_based at {tmp_path / 'kv/data/state_store/state.sqlite3'})" in moved.stderr
    assert f"to: kv (file_based at {tmp_path / 'back/data/state_store/state.sqlite3'})" in moved.stderr
    assert not (tmp_path / "data").exists(), (
        "a relative file_path must not resolve against the current folder"
    )


def test_the_adapter_guide_step_1_reaches_a_green_suite(installed: dict[str, str], clone: Path) -> None:
    first = run_block("adapter-step-1", clone, installed)
    assert " passed" in first.stdout and " failed" not in first.stdout, first.stdout[-2000:]
    mine = clone.parent / "iii-state-mystore"
    renamed = run_block("adapter-rename", mine, installed)
    assert "2 passed" in renamed.stdout
    assert "mystore" in renamed.stdout.split("passed", 1)[1]  # `iii-state plugins` lists it
    assert (mine / "iii_state_mystore" / "plugin.py").is_file()


def test_worker_dry_run_prints_what_the_worker_guide_shows(installed: dict[str, str], tmp_path: Path) -> None:
    """docs/worker.md's --dry-run sample, from the README's install (no iii SDK installed)."""
    text = (REPO / "docs" / "worker.md").read_text()
    sample = text.split("$ iii-state worker --dry-run --no-telemetry\n", 1)[1].split("\n```", 1)[0]
    (tmp_path / "iii-config.yaml").write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: kv\n"
        "        config:\n          store_method: file_based\n          file_path: ./data/state_store\n"
    )
    done = subprocess.run(
        ["iii-state", "worker", "--dry-run", "--no-telemetry"],
        cwd=tmp_path, env=installed, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = sample.replace("/home/me/app", str(tmp_path)).splitlines()
    assert done.stdout.splitlines() == shown
