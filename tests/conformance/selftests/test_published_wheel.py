"""The published suite is the contract only, and it runs from wheels alone.

Builds the wheels of the core, the kv and redis plugins and the conformance suite from this
checkout, installs them (and their dependencies, nothing else) into a fresh venv, checks that
no server-launching code came along, and runs ``iii-state conformance --config …`` (``--quick``)
from that venv against a live redis-server: what a third party does after ``pip install``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
#: source trees of the wheels, relative to the checkout; only what their builds read is copied
PACKAGES = {
    ".": ["pyproject.toml", "README.md", "iii_state_core"],
    "plugins/kvfile": None,
    "plugins/redis": None,
    "tests/conformance": None,
}
#: what a module that starts servers or assumes this checkout would contain
LAUNCHER_MARKERS = ("Popen", "redis-server", "memcached", "dynalite", "moto", "parents[3]", ".tools")
_SKIP = shutil.ignore_patterns("tests", "selftests", "build", "*.egg-info", "__pycache__", ".*")


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


def _copy_sources(into: Path) -> list[Path]:
    roots = []
    for rel, only in PACKAGES.items():
        source, target = REPO / rel, into / rel.replace("/", "-")
        if only is None:
            shutil.copytree(source, target, ignore=_SKIP)
        else:
            target.mkdir(parents=True)
            for name in only:
                path = source / name
                if path.is_dir():
                    shutil.copytree(path, target / name, ignore=_SKIP)
                else:
                    shutil.copy2(path, target / name)
        roots.append(target)
    return roots


def test_conformance_runs_from_wheels_in_a_clean_venv(tmp_path: Path, redis_url: str) -> None:
    # Copies, so that setuptools' in-tree build files never land in the checkout; no build
    # isolation (the dev venv's setuptools builds them), which keeps this test under a minute.
    roots = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), *map(str, roots)])  # fmt: skip
    built = sorted(path.name.split("-")[0] for path in wheels.glob("*.whl"))
    assert built == ["iii_state_conformance", "iii_state_core", "iii_state_kvfile", "iii_state_redis"]

    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(fresh)
    python = fresh / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
          *map(str, wheels.glob("*.whl"))])  # fmt: skip

    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", where]).stdout.strip())
    assert not (site / "iii_state_testsupport").exists()
    suite_files = sorted(site.joinpath("iii_state_conformance").rglob("*.py"))
    assert suite_files, "the conformance wheel installed no modules"
    for path in suite_files:
        text = path.read_text(encoding="utf-8")
        found = [marker for marker in LAUNCHER_MARKERS if marker in text]
        assert not found, f"{path.relative_to(site)} looks like a server launcher: {found}"

    config = tmp_path / "iii-config.yaml"
    # (a `state:` block is not the config form: it silently meant the embedded kv store until a
    # config file without an iii-state block became an error, so this once tested kv, not Redis)
    config.write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: redis\n"
        f"        config:\n          redis_url: {redis_url}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("III_", "PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(fresh / "bin" / "iii-state"), "conformance", "--config", str(config), "--quick"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    address = redis_url.removeprefix("redis://")
    assert f"conformance: testing redis at {address}" in done.stdout, done.stdout[:1000]  # not a default
    assert "conformance: PASS" in done.stdout
    assert done.stdout.startswith("conformance: testing redis at "), done.stdout[:200]
    summary = [line for line in done.stdout.splitlines() if re.search(r"\d+ passed", line)]
    assert summary and "failed" not in summary[-1], done.stdout[-2000:]
