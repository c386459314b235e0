"""A mistyped ``--engine`` URL never echoes its credentials (issue 12 #9)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from iii_state_core.worker.cli import worker
from iii_state_core.worker.settings import redact_url

MISTYPED = [
    "wss//bob:s3cr3t@host",
    "ws:/bob:s3cr3t@host",
    "bob:s3cr3t@host",
    "ws://bob:s3cr3t@host:99999",
    "ws://bob:s3cr3t@[::1:9",
    "http://bob:s3cr3t@host",
    "ws//host?token=s3cr3t",
    "ws://bob:s3/cr3t@host:notaport",
]


@pytest.mark.parametrize("url", MISTYPED)
def test_a_mistyped_engine_url_is_refused_without_its_secret(url: str) -> None:
    result = CliRunner().invoke(worker, ["--engine", url])
    assert result.exit_code == 2, result.output
    assert "s3cr3t" not in result.output and "cr3t" not in result.output and "bob" not in result.output
    assert "Invalid value for '--engine'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss//bob:s3cr3t@host", "wss//***@host"),
        ("ws://bob:s3cr3t@host:99999", "ws://***@host:99999"),
        ("bob:pa@ss@host", "***@host"),
        ("ws://u:p@[::1]:77/x?k=v", "ws://***@[::1]:77/x?k=***"),
        ("ws://127.0.0.1:49134", "ws://127.0.0.1:49134"),
    ],
)
def test_redact_url_hides_user_information_in_malformed_urls_too(url: str, shown: str) -> None:
    assert redact_url(url) == shown
