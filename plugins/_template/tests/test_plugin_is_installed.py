"""The package registers its adapter through the iii_state entry point."""

from __future__ import annotations

from iii_state_core.plugins import Registry


def test_plugin_is_installed() -> None:
    registry = Registry()
    info = registry.adapter("template")  # <REPLACE ME>
    assert info.cls.__module__.startswith("iii_state_template")  # <REPLACE ME>


def test_unknown_option_is_rejected() -> None:
    import pytest

    from iii_state_core import ConfigError, open_store

    with pytest.raises(ConfigError, match="nope"):
        open_store(adapter="template", adapter_config={"nope": 1})  # <REPLACE ME>
