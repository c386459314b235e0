"""Conditional-write tokens and native ``modify``, checked on the primitives themselves.

End-to-end races rarely hit the moment a wrong token rule matters, so these tests call the
adapter directly through the suite's test hook, the ``adapter`` fixture (``store.adapter``),
and set up each case step by step. The rules (docs/writing-an-adapter.md):

* ``write_if(token)`` must write when nothing wrote the entry since ``read_versioned``
  returned ``token``, and must not write when the entry's bytes (or presence) differ from
  what that read saw — after a write, a delete, or a delete and re-create with other bytes.
  Only when the entry is back to exactly the bytes seen may either answer be given.
* The missing form of a token means "only if still missing".
* A native ``modify`` returns ``(old, new)`` of the attempt that was written: ``old`` is the
  argument of the *last* call of ``change`` and ``new`` its result.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from iii_state_core import Adapter

from .base import Sized

A, B, C = b'{"v":"a"}', b'{"v":"b"}', b'{"v":"c"}'


class TokenTests(Sized):
    def test_read_versioned_returns_what_read_returns(self, adapter: Adapter, scope: str) -> None:
        assert adapter.read_versioned(scope, "k")[0] is None
        adapter.write(scope, "k", A)
        raw, _ = adapter.read_versioned(scope, "k")
        assert raw == A == adapter.read(scope, "k")

    def test_write_if_with_an_unchanged_token_writes_once(self, adapter: Adapter, scope: str) -> None:
        adapter.write(scope, "k", A)
        _, token = adapter.read_versioned(scope, "k")
        assert adapter.write_if(scope, "k", B, token) is True, "nothing changed, yet write_if refused"
        assert adapter.read(scope, "k") == B
        assert adapter.write_if(scope, "k", C, token) is False, (
            "the same token wrote twice: after write_if succeeded the entry is no longer what was read"
        )
        assert adapter.read(scope, "k") == B

    def test_write_if_after_another_write_writes_nothing(self, adapter: Adapter, scope: str) -> None:
        adapter.write(scope, "k", A)
        _, token = adapter.read_versioned(scope, "k")
        adapter.write(scope, "k", B)
        assert adapter.write_if(scope, "k", C, token) is False, "a stale token wrote over a newer value"
        assert adapter.read(scope, "k") == B

    def test_missing_token_means_only_if_still_missing(self, adapter: Adapter, scope: str) -> None:
        raw, missing = adapter.read_versioned(scope, "k")
        assert raw is None
        adapter.write(scope, "k", A)
        assert adapter.write_if(scope, "k", B, missing) is False, (
            "write_if with the token of a missing entry overwrote an entry created meanwhile"
        )
        assert adapter.read(scope, "k") == A
        _, fresh = adapter.read_versioned(scope, "other")
        assert adapter.write_if(scope, "other", B, fresh) is True, (
            "create-only write_if refused a missing key"
        )
        assert adapter.read(scope, "other") == B
        assert adapter.write_if(scope, "other", C, fresh) is False, "create-only wrote over an existing key"
        assert adapter.read(scope, "other") == B

    def test_token_is_dead_once_the_entry_is_deleted(self, adapter: Adapter, scope: str) -> None:
        adapter.write(scope, "k", A)
        _, token = adapter.read_versioned(scope, "k")
        assert adapter.remove(scope, "k") == A
        assert adapter.write_if(scope, "k", B, token) is False, (
            "write_if with the token of a deleted entry re-created it (an update would resurrect it)"
        )
        assert adapter.read(scope, "k") is None
        assert scope not in adapter.list_scopes(), "a refused write_if left the scope listed"

    def test_token_is_dead_after_delete_and_recreate_with_other_bytes(
        self, adapter: Adapter, scope: str
    ) -> None:
        adapter.write(scope, "k", A)
        _, token = adapter.read_versioned(scope, "k")
        adapter.remove(scope, "k")
        adapter.write(scope, "k", B)
        assert adapter.write_if(scope, "k", C, token) is False, (
            "a token from before a delete and re-create wrote over the new entry (a per-key version "
            "that restarts on re-create?)"
        )
        assert adapter.read(scope, "k") == B
        # back to the very bytes seen: either answer is allowed, but it must be kept
        adapter.remove(scope, "k")
        adapter.write(scope, "k", A)
        wrote = adapter.write_if(scope, "k", C, token)
        assert adapter.read(scope, "k") == (C if wrote else A), f"write_if said {wrote} but did otherwise"

    def test_token_of_a_missing_entry_is_dead_while_it_exists(self, adapter: Adapter, scope: str) -> None:
        _, missing = adapter.read_versioned(scope, "k")
        adapter.write(scope, "k", A)
        adapter.write(scope, "k", B)
        assert adapter.write_if(scope, "k", C, missing) is False
        adapter.remove(scope, "k")
        wrote = adapter.write_if(scope, "k", C, missing)  # missing again: either answer
        assert adapter.read(scope, "k") == (C if wrote else None), f"write_if said {wrote} but did otherwise"

    def test_native_modify_returns_the_attempt_it_wrote(self, adapter: Adapter, scope: str) -> None:
        """Another writer lands while ``change`` runs; the result must describe what was written.

        The other write runs in a thread. If the adapter holds a lock while ``change`` runs, that
        write waits and lands after ``modify``; otherwise it lands first and ``modify`` must
        retry (or have been atomic around it). Either order is fine; a mixture is not.
        """
        adapter.write(scope, "k", A)
        calls: list[bytes | None] = []
        other: dict[str, Any] = {}

        def interfere() -> None:
            other["old"] = adapter.write(scope, "k", B)

        writer = threading.Thread(target=interfere, daemon=True)

        def change(old: bytes | None) -> bytes:
            calls.append(old)
            if len(calls) == 1:
                writer.start()
                writer.join(0.5)  # a modify holding a lock keeps it waiting: that is fine
            return b'{"attempt":%d}' % len(calls)

        result = adapter.modify(scope, "k", change)
        if result is None:
            assert not calls, "modify returned None (emulated) after calling change()"
            return
        writer.join(30)
        assert not writer.is_alive(), "the other write never finished"
        old, new = result
        last = b'{"attempt":%d}' % len(calls)
        assert new == last, f"modify returned new={new!r}, but the last change() produced {last!r}"
        assert old == calls[-1], (
            f"modify returned old={old!r}, but the last change() was given {calls[-1]!r}: "
            "after a lost attempt, return the old value of the attempt that was written"
        )
        final = adapter.read(scope, "k")
        if other["old"] == A:  # the other write landed first: modify must have replaced it
            assert old == B and final == new, (
                f"the other write replaced the original first, yet modify returned old={old!r} "
                f"and the entry holds {final!r}: an update was lost"
            )
        else:  # modify landed first; the other write replaced modify's value
            assert other["old"] == new and old == A and final == B, (
                f"modify returned ({old!r}, {new!r}), the other write replaced {other['old']!r}, "
                f"the entry holds {final!r}: not one order of the two writes"
            )

    def test_conditional_writes_follow_the_token_rules(self, adapter: Adapter, make_scope: Any) -> None:
        """Model-based: random reads, writes, deletes and write_ifs with old tokens (derandomized)."""

        def build() -> _TokenMachine:
            machine = _TokenMachine()
            machine.adapter = adapter
            machine.scope = make_scope(f"-tokens-{secrets.token_hex(3)}")
            return machine

        run_state_machine_as_test(
            build,  # type: ignore[arg-type]  # any factory of machines works
            settings=settings(
                max_examples=self.sized(self.token_examples, 10),
                stateful_step_count=20,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )

    #: Hypothesis examples of the token model (derandomized: the same cases every run).
    token_examples = 40


_KEYS = st.sampled_from(["k", "j"])
_DATA = st.sampled_from([A, B, C])


class _TokenMachine(RuleBasedStateMachine):
    """The model: each key's bytes and a count of the writes that touched it."""

    adapter: Adapter
    scope: str
    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, bytes | None] = {"k": None, "j": None}
        self.writes: dict[str, int] = {"k": 0, "j": 0}

    @rule(target=tokens, key=_KEYS)
    def read_versioned(self, key: str) -> tuple[str, bytes | None, int, Any]:
        raw, token = self.adapter.read_versioned(self.scope, key)
        assert raw == self.data[key], f"read_versioned gave {raw!r}, the model holds {self.data[key]!r}"
        return key, raw, self.writes[key], token

    @rule(key=_KEYS, data=_DATA)
    def write(self, key: str, data: bytes) -> None:
        assert self.adapter.write(self.scope, key, data) == self.data[key]
        self.data[key] = data
        self.writes[key] += 1

    @rule(key=_KEYS)
    def remove(self, key: str) -> None:
        assert self.adapter.remove(self.scope, key) == self.data[key]
        if self.data[key] is not None:
            self.writes[key] += 1
        self.data[key] = None

    @rule(key=_KEYS, data=_DATA)
    def delete_and_recreate(self, key: str, data: bytes) -> None:
        """Two steps in one rule, so the ABA sequences are drawn often."""
        self.remove(key)
        self.write(key, data)

    @rule(seen=tokens, data=_DATA)
    def write_if(self, seen: tuple[str, bytes | None, int, Any], data: bytes) -> None:
        key, raw, writes, token = seen
        wrote = self.adapter.write_if(self.scope, key, data, token)
        if writes == self.writes[key]:
            assert wrote, f"nothing wrote {key!r} since the token was read, yet write_if refused"
        elif raw != self.data[key]:
            assert not wrote, (
                f"write_if with a token of {raw!r} wrote over {self.data[key]!r} "
                f"({self.writes[key] - writes} writes later)"
            )
        if wrote:
            self.data[key] = data
            self.writes[key] += 1

    @invariant()
    def entries_match(self) -> None:
        for key, want in self.data.items():
            got = self.adapter.read(self.scope, key)
            assert got == want, f"{key!r} holds {got!r}, the model says {want!r}"
