"""contract § Transactions: ``state::transact`` applies every write or none, where declared."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from iii_state_core import StateError, StateStore

from .. import processes
from ..processes import StoreSpec
from .base import call, wire_error
from .expiry import LONG_MS, SHORT_STEPS_MS, _in_time, _too_slow, _wait_past

INC = "increment"
#: The contention test's size: processes, and transfers each (env ``III_STATE_TRANSFERS``).
TRANSFER_PROCESSES = 8
TRANSFERS = 12


def _update(scope: str, key: str, by: int) -> dict[str, Any]:
    return {"op": "update", "scope": scope, "key": key, "ops": [{"type": INC, "path": "", "by": by}]}


def _needs_transactions(caps: Any) -> None:
    if not caps.transactions:
        pytest.skip("the adapter declares transactions=False (the refusal is checked by another test)")


class TransactionTests:
    def test_transact_is_refused_without_the_capability(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        if caps.transactions:
            pytest.skip("the adapter declares transactions")
        error = wire_error(
            store, "transact", {"ops": [{"op": "set", "scope": scope, "key": "k", "value": 1}]}
        )
        assert (
            error.code == "UNSUPPORTED"
            and "transactions" in str(error)
            and "nothing was written" in str(error)
        )
        assert store.get(scope, "k") is None

    def test_all_or_nothing_results_conditions_and_events(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        _needs_transactions(caps)
        store.set(scope, "a", 10)
        store.set(scope, "gone", "x")
        seen: list[dict[str, Any]] = []
        store.on_change(lambda e: seen.append(e.to_wire()), scope=scope)
        committed = call(
            store,
            "transact",
            {
                "ops": [
                    _update(scope, "a", -3),
                    _update(scope, "b", 3),
                    {"op": "set", "scope": scope, "key": "c", "value": {"x": [1]}},
                    {"op": "delete", "scope": scope, "key": "gone"},
                ],
                "conditions": [{"scope": scope, "key": "a", "expected": 10}, {"scope": scope, "key": "none"}],
            },
        )
        assert committed == {
            "committed": True,
            "results": [
                {"old_value": 10, "new_value": 7},
                {"old_value": None, "new_value": 3},
                {"old_value": None, "new_value": {"x": [1]}},
                "x",
            ],
        }
        assert [(e["event_type"], e["key"]) for e in seen] == [
            ("state:updated", "a"),
            ("state:created", "b"),
            ("state:created", "c"),
            ("state:deleted", "gone"),
        ]
        seen.clear()
        before = store.get_many(scope, ["a", "b", "c", "gone"])
        failed = call(
            store,
            "transact",
            {
                "ops": [_update(scope, "a", -1), {"op": "delete", "scope": scope, "key": "c"}],
                "conditions": [
                    {"scope": scope, "key": "b", "expected": 3},
                    {"scope": scope, "key": "a", "expected": 10},
                ],
            },
        )
        assert failed == {"committed": False, "failed_condition": 1, "current": 7} and seen == []
        for bad, needle in (
            ({"ops": [_update(scope, "a", 1), {"op": "get", "scope": scope, "key": "a"}]}, "ops[1]"),
            (
                {"ops": [_update(scope, "a", 1), {"op": "set", "scope": scope, "key": "b"}]},
                "missing field `value`",
            ),
            (
                {"ops": [_update(scope, "a", 1), {"op": "delete", "scope": scope, "key": "a"}]},
                "each entry once",
            ),
            ({"ops": []}, "non-empty"),
            ({"ops": [_update(scope, "a", 1)], "conditions": [{"key": "a"}]}, "conditions[0]"),
            (
                {"ops": [_update(scope, f"k{i}", 1) for i in range(caps.max_transaction_ops + 1)]},
                f"at most {caps.max_transaction_ops}",
            ),
        ):
            error = wire_error(store, "transact", bad)
            assert error.code == "deserialization_error" and needle in str(error), (needle, str(error))
        assert store.get_many(scope, ["a", "b", "c", "gone"]) == before and seen == []

    def test_sets_and_deletes_alone_answer_as_any_transaction(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        """Only sets and deletes (one call on adapters with ``write_many_when``): the same old values,
        events and condition answers; a condition on the same JSON spelled otherwise (object key
        order), or on "absent" over a stored ``null``, holds."""
        _needs_transactions(caps)
        store.set(scope, "o", {"b": 1, "a": [2]})
        store.set(scope, "n", None)
        store.set(scope, "d", "x")
        seen: list[dict[str, Any]] = []
        store.on_change(lambda e: seen.append(e.to_wire()), scope=scope)
        ops = [
            {"op": "set", "scope": scope, "key": "o", "value": 1},
            {"op": "set", "scope": scope, "key": "new", "value": [1]},
            {"op": "delete", "scope": scope, "key": "d"},
            {"op": "delete", "scope": scope, "key": "none"},
        ]
        spelled = {"scope": scope, "key": "o", "expected": {"a": [2], "b": 1}}
        wrong = {"scope": scope, "key": "d", "expected": "y"}
        failed = call(store, "transact", {"ops": ops, "conditions": [spelled, wrong]})
        assert failed == {"committed": False, "failed_condition": 1, "current": "x"} and seen == []
        absent = {"scope": scope, "key": "n"}
        right = {**wrong, "expected": "x"}
        done = call(store, "transact", {"ops": ops, "conditions": [spelled, absent, right]})
        assert done == {
            "committed": True,
            "results": [
                {"old_value": {"b": 1, "a": [2]}, "new_value": 1},
                {"old_value": None, "new_value": [1]},
                "x",
                None,
            ],
        }
        assert [(e["event_type"], e["key"], e["old_value"]) for e in seen] == [
            ("state:updated", "o", {"b": 1, "a": [2]}),
            ("state:created", "new", None),
            ("state:deleted", "d", "x"),
            ("state:deleted", "none", None),
        ]
        assert store.get_many(scope, ["o", "new", "d", "n"]) == {"o": 1, "new": [1], "d": None, "n": None}

    def test_ttl_ms_in_a_transaction_follows_the_single_functions(
        self, store: StateStore, make_scope: Callable[[str], str], caps: Any
    ) -> None:
        """Absent ``ttl_ms`` keeps the deadline on update and means none on set; a given one
        replaces it; an expired entry is missing to conditions and writes."""
        _needs_transactions(caps)
        scope = make_scope("")
        timed = {"op": "set", "scope": scope, "key": "n", "value": 1, "ttl_ms": LONG_MS}
        if caps.ttl == "none":
            error = wire_error(store, "transact", {"ops": [timed]})
            assert error.code == "UNSUPPORTED" and "nothing was written" in str(error)
            assert store.get(scope, "n") is None
            return
        for ttl in SHORT_STEPS_MS:  # a fresh scope for each: "v"'s TTL must be read before its deadline
            scope = make_scope(f"-{ttl}")
            timed["scope"] = scope
            store.set(scope, "u", {"n": 1}, ttl_ms=LONG_MS)
            store.set(scope, "s", 1, ttl_ms=LONG_MS)
            store.set(scope, "brief", 1, ttl_ms=ttl)
            began = time.monotonic()
            done = call(
                store,
                "transact",
                {
                    "ops": [
                        {**_update(scope, "u", 0), "ops": [{"type": "set", "path": "n", "value": 2}]},
                        {"op": "set", "scope": scope, "key": "s", "value": 2},
                        {**timed, "ttl_ms": 5 * LONG_MS},
                        {**_update(scope, "v", 1), "ttl_ms": ttl},
                    ]
                },
            )
            written = time.monotonic()
            assert done["committed"] is True
            left = {key: store.ttl(scope, key).ttl_ms for key in ("u", "s", "n", "v")}
            if _in_time(began, ttl):
                break
        else:
            pytest.fail(_too_slow("A transaction and four ttl reads"))
        assert left["u"] is not None and LONG_MS - 30_000 < left["u"] <= LONG_MS, left
        assert left["s"] is None and left["n"] is not None and LONG_MS < left["n"] <= 5 * LONG_MS, left
        assert left["v"] is not None and 0 < left["v"] <= ttl, left
        _wait_past(written, ttl)
        again = call(
            store,
            "transact",
            {"ops": [_update(scope, "v", 5)], "conditions": [{"scope": scope, "key": "brief"}]},
        )
        assert again == {"committed": True, "results": [{"old_value": None, "new_value": 5}]}
        assert store.ttl(scope, "v").ttl_ms is None  # an expired entry has no deadline to keep
        # sets alone (one call where the adapter can): the expired entry is missing there too
        brief = {"scope": scope, "key": "brief"}
        gone = call(store, "transact", {"ops": [{**brief, "op": "set", "value": 2}], "conditions": [brief]})
        assert gone == {"committed": True, "results": [{"old_value": None, "new_value": 2}]}
        assert store.ttl(scope, "brief").ttl_ms is None
        for bad in (0, 1.5, "1000"):
            error = wire_error(store, "transact", {"ops": [{**timed, "key": "bad", "ttl_ms": bad}]})
            assert error.code == "deserialization_error" and "ops[0]" in str(error), str(error)
        assert store.get(scope, "bad") is None

    def test_transfers_between_accounts_keep_the_total(
        self, store: StateStore, scope: str, caps: Any, spec: StoreSpec
    ) -> None:
        """Four store objects (own connections) moving units between accounts: the total stays exact.

        Threads rather than processes keep it fast; each store object has its own connection or
        file handle, so the store's own atomicity is what is tested.
        """
        _needs_transactions(caps)
        accounts, workers, each = 10, 4, 40
        store.set_many(scope, {f"acct{i}": 100 for i in range(accounts)})
        barrier = threading.Barrier(workers)
        done: list[list[tuple[int, int]]] = []

        def work(me: int) -> None:
            with spec.open() as mine:
                done.append(processes.transfers(mine, scope, accounts, each, me, barrier))

        threads = [threading.Thread(target=work, args=(me,)) for me in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(done) == workers and any(done), done
        moves = [move for moved in done for move in moved]
        balances = store.get_many(scope, [f"acct{i}" for i in range(accounts)])
        assert balances == processes.balances_after(100, accounts, moves), balances

    def test_transfers_in_processes_keep_every_balance_exact(
        self, store: StateStore, scope: str, caps: Any, spec: StoreSpec
    ) -> None:
        """The bank transfer: TRANSFER_PROCESSES processes, each TRANSFERS transactions moving 1
        unit between two random accounts of 10. Every balance ends exactly where the committed
        transfers put it (so the total is exact); without ``transactions`` every one is refused
        and nothing changes. ``III_STATE_TRANSFERS=200`` runs the issue's full size."""
        accounts, start = 10, 1000
        names = [f"acct{i}" for i in range(accounts)]
        store.set_many(scope, dict.fromkeys(names, start))
        if not caps.transactions:
            barrier = threading.Barrier(1)
            with pytest.raises(StateError) as refused:
                processes.transfers(store, scope, accounts, 1, 0, barrier)
            assert refused.value.code == "UNSUPPORTED"
            assert store.get_many(scope, names) == dict.fromkeys(names, start)
            return
        barrier = processes.context().Barrier(TRANSFER_PROCESSES)
        per_process = int(os.environ.get("III_STATE_TRANSFERS", TRANSFERS))
        done = processes.run_processes(
            spec,
            processes.transfers,
            [(scope, accounts, per_process, me, barrier) for me in range(TRANSFER_PROCESSES)],
            timeout=600,
        )
        moves = [tuple(move) for moved in done for move in moved]
        assert moves, "no transfer committed"
        balances = store.get_many(scope, names)
        assert sum(balances.values()) == start * accounts, balances
        assert balances == processes.balances_after(start, accounts, moves), (balances, len(moves))

    def test_a_transaction_across_scopes_commits_or_is_refused_whole(
        self, store: StateStore, make_scope: Callable[[str], str], caps: Any
    ) -> None:
        """Scopes in different Cluster slots may be refused (``UNSUPPORTED``); never half-applied."""
        _needs_transactions(caps)
        a, b = make_scope("x"), make_scope("y")
        ops = [
            {"op": "set", "scope": a, "key": "k", "value": 1},
            {"op": "set", "scope": b, "key": "k", "value": 2},
        ]
        try:
            assert call(store, "transact", {"ops": ops})["committed"] is True
            assert (store.get(a, "k"), store.get(b, "k")) == (1, 2)
        except Exception as exc:
            assert getattr(exc, "code", None) == "UNSUPPORTED" and "slot" in str(exc), exc
            assert (store.get(a, "k"), store.get(b, "k")) == (None, None)
