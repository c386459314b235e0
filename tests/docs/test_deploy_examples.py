"""The deployment examples docs/worker.md's "Replace iii's state worker in three steps" points to
(issue 15, item 7): iii.worker.yaml, deploy/iii/worker-compose.yaml, engine-config.yaml and
state-config.yaml parse, hold what iii reads, and start the worker they describe."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from click.testing import CliRunner

from iii_state_core.cli import cli
from iii_state_core.config import WORKER_NAMES, load_file, require_file
from iii_state_core.worker.configuration import parse_entry, schema

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "iii"
#: The manifest keys iii documents for a Python worker (iii 0.26 refuses any other at add time).
MANIFEST_KEYS = {"name", "description", "runtime", "scripts", "config", "dependencies", "env", "resources"}
INSTALLED = ["kv", "redis", "dynamodb", "memcached"]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_manifest_starts_the_worker_as_state_with_iiis_keys_only(tmp_path: Path) -> None:
    manifest = _yaml(ROOT / "iii.worker.yaml")
    assert set(manifest) <= MANIFEST_KEYS, set(manifest) - MANIFEST_KEYS
    assert manifest["name"] == "state" and re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", manifest["name"])
    assert set(manifest["runtime"]) == {"base_image"}
    assert re.fullmatch(r"[A-Za-z0-9._/:@+-]{1,512}", manifest["runtime"]["base_image"])
    assert set(manifest["scripts"]) <= {"setup", "install", "start"}
    assert "configuration" in manifest["dependencies"]
    # the install line names packages of this checkout
    for word in shlex.split(manifest["scripts"]["install"]):
        if word.startswith("./plugins/"):
            assert (ROOT / word / "pyproject.toml").is_file(), word
    # iii's seed is a valid configuration entry, for our parser and for the schema we send
    parse_entry(manifest["config"])
    assert not list(jsonschema.Draft7Validator(schema(INSTALLED)).iter_errors(manifest["config"]))

    # the start line runs `iii-state worker` with a config that loads (copied: --dry-run opens
    # the store, and a relative file_path is relative to the config file)
    argv = shlex.split(manifest["scripts"]["start"])
    assert Path(argv[0]).name == "iii-state" and argv[1] == "worker"
    config = argv[argv.index("--config") + 1]
    assert (ROOT / config).is_file(), config
    shutil.copy(ROOT / config, tmp_path / "state-config.yaml")
    argv[argv.index("--config") + 1] = str(tmp_path / "state-config.yaml")
    result = CliRunner().invoke(cli, [*argv[1:], "--dry-run", "--no-telemetry"])
    assert result.exit_code == 0, result.output
    assert re.search(r"worker name:\s+state\b", result.output), result.output
    assert "kv (file_based at" in result.output


def test_the_state_config_is_iiis_state_block_and_seeds_a_valid_entry() -> None:
    settings = require_file(DEPLOY / "state-config.yaml")
    assert settings.adapter == "kv" and settings.adapter_config["store_method"] == "file_based"
    block = _yaml(DEPLOY / "state-config.yaml")["workers"][0]
    assert block["name"] in WORKER_NAMES
    assert not list(jsonschema.Draft7Validator(schema(INSTALLED)).iter_errors(block["config"]))


def test_compose_and_engine_configs_leave_state_to_this_worker() -> None:
    compose = _yaml(DEPLOY / "worker-compose.yaml")
    assert "configuration" in compose["engine"]["workers"], "the configuration worker keeps the entry"
    state = compose["containers"]["state"]
    assert state["worker"].startswith("path://"), "a checkout of this repository, with iii.worker.yaml"
    assert any(
        "state" in c.get("start_after", []) for name, c in compose["containers"].items() if name != "state"
    )

    engine = _yaml(DEPLOY / "engine-config.yaml")
    names = {w.get("name") for w in engine.get("workers") or []}
    assert not names & {"iii-state", "state"}, "the engine would start its own state worker"
    assert load_file(DEPLOY / "engine-config.yaml") is None, "and the worker refuses it as its config"


def test_the_three_steps_link_every_example() -> None:
    text = (ROOT / "docs" / "worker.md").read_text(encoding="utf-8")
    section = text[text.index("## Replace iii's `state` worker in three steps") :]
    section = section[: section.index("\n## ", 4)]
    links = set(re.findall(r"\]\((\.\./[^)#]+)\)", section))
    for needed in ("../iii.worker.yaml", "../deploy/iii/worker-compose.yaml",
                   "../deploy/iii/engine-config.yaml", "../deploy/iii/state-config.yaml"):  # fmt: skip
        assert needed in links, needed
    for link in links:
        assert (ROOT / "docs" / link).resolve().is_file(), link
