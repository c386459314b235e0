"""The repository holds the product: no diaries, no internal spec numbers in user-facing text,
and the docs a user looks for (limits, decisions, changelog) exist and are linked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def test_no_notes_folder_or_status_page() -> None:
    assert not (REPO / "notes").exists()
    assert not [p for p in _tracked() if re.search(r"(to-lead|STATUS)\.md$", p.name)]


def test_no_internal_spec_numbers_or_lead_in_text() -> None:
    pattern = re.compile(r"SPEC(\.md)? ?§|the lead\b|changes by others")
    found = []
    for path in _tracked():
        if path.suffix not in {".py", ".md", ".json", ".toml", ".txt", ".yaml", ".yml", ".ini", ""}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line) and path.name != "test_repo_is_product.py":
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_contract_sections_named_in_text_exist() -> None:
    headings = re.findall(r"^## (.+)$", (REPO / "docs/contract.md").read_text(), re.M)
    unknown, named = [], 0
    for path in _tracked():
        if path.suffix not in {".py", ".md", ".json"} or path.name == Path(__file__).name:
            continue
        for rest in re.findall(r"contract § (.{0,40})", path.read_text()):
            named += 1
            if not any(rest.startswith(heading) for heading in headings):
                unknown.append(f"{path.relative_to(REPO)}: contract § {rest}")
    assert named and not unknown, "\n".join(unknown)


def test_readme_links_limits_decisions_changelog() -> None:
    readme = (REPO / "README.md").read_text()
    for target in ("docs/limits.md", "docs/decisions/", "CHANGELOG.md"):
        assert target in readme
        assert (REPO / target).exists()
    assert "## Unreleased" in (REPO / "CHANGELOG.md").read_text()
    for plugin in ("kvfile", "redis", "dynamodb", "memcached", "_template"):
        assert "\n## Limits\n" in (REPO / "plugins" / plugin / "README.md").read_text(), plugin


def test_one_account_of_the_config_files() -> None:
    """README, contract and worker guide tell the same story: iii-config.yaml is iii-state's own
    file, config.yaml is the engine's, never the same file."""
    contract = (REPO / "docs/contract.md").read_text()
    readme = (REPO / "README.md").read_text()
    worker = (REPO / "docs/worker.md").read_text()
    assert "the file an iii project already has" not in contract
    for text in (contract, readme):
        assert "**Two files, two programs.** `iii-config.yaml` is iii-state's own settings file" in text
    assert "never give this file to the engine" in worker and "two files,\n   two programs" in worker
