"""Install hints name a command that works today (the checkout) and the published name."""

from __future__ import annotations

from pathlib import Path

import pytest

from iii_state_core import install_hints
from iii_state_core.install_hints import install_hint
from iii_state_core.plugins import Registry

ROOT = Path(__file__).resolve().parents[2]


def test_from_this_checkout_the_hint_names_its_folder() -> None:
    assert install_hint("iii-state-kvfile") == (
        f"install it from this checkout: pip install {ROOT}/plugins/kvfile "
        "(or, once published, pip install iii-state-kvfile)"
    )
    assert f"pip install '{ROOT}/[worker]'" in install_hint("iii-state-core", "[worker]")
    assert f"pip install {ROOT}/tests/conformance" in install_hint("iii-state-conformance")


def test_outside_a_checkout_the_hint_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install_hints, "_checkout", lambda: None)
    assert install_hint("iii-state-redis") == (
        "install it: pip install iii-state-redis (not on the package index yet; "
        "from a checkout of iii-state: pip install ./plugins/redis)"
    )
    assert install_hint("iii-state-other") == "install it: pip install iii-state-other"


def test_unknown_adapter_error_carries_the_hint() -> None:
    with pytest.raises(Exception, match=r"from this checkout: pip install \S+/plugins/memcached"):
        Registry(extra_plugins=[], load_entry_points=False).adapter("memcached")


def test_the_core_always_brings_the_embedded_store() -> None:
    """Decision 0007: installing the core installs iii-state-kvfile, the embedded default."""
    from importlib.metadata import requires

    wanted = [r for r in requires("iii-state-core") or [] if r.startswith("iii-state-kvfile")]
    assert wanted == ["iii-state-kvfile<0.2,>=0.1"]
