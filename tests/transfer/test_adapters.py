"""10,000 entries in 50 hostile scopes: kv -> every adapter -> kv, byte for byte, digest-verified."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from transfer_data import HOSTILE_SCOPES, fill, kv_store, make_entries, raw_entries

from iii_state_core import StateStore
from iii_state_core.transfer import migrate, verify

ADAPTERS = ["kv", "redis", "dynamodb", "memcached"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_kv_to_adapter_and_back(
    adapter: str, kv_source: StateStore, open_target: Callable[[str], StateStore], tmp_path: Path
) -> None:
    middle = open_target(adapter)
    assert fill(kv_source, make_entries(10_000)) == 10_000
    original = raw_entries(kv_source)

    there = migrate(kv_source, middle, page_size=1000, workers=4)
    assert there.ok and (there.total, there.written) == (10_000, 10_000), there
    assert there.verification is not None and len(there.verification.scopes) == 50
    unordered = not middle.capabilities.ordered_listing
    # the adapter holds exactly the bytes the core gave it
    assert raw_entries(middle, HOSTILE_SCOPES, repeats=unordered) == original

    with kv_store(tmp_path / "back") as back:
        # only our scopes: on a shared server the adapter may hold other tests' data
        home = migrate(middle, back, scopes=HOSTILE_SCOPES, page_size=1000, workers=4)
        assert home.ok and home.written == 10_000, home
        assert raw_entries(back) == original
        both = verify(kv_source, back)
        assert both.ok and both.source_entries == both.target_entries == 10_000
        assert {c.scope: c.source.digest for c in both.scopes} == {
            c.scope: c.target.digest for c in there.verification.scopes
        }
