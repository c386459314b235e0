"""kv's big import rounds give exactly what the general path gives (the one Redis and the others take)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from iii_state_core import StateStore, open_store
from iii_state_core.adapter import Capabilities
from iii_state_core.expiry import now_ms
from iii_state_core.operations import Limits
from iii_state_core.transfer import (
    ConflictsFoundError,
    Entry,
    EntryConflictError,
    InvalidLinesError,
    encode_line,
    export_entries,
    import_file,
    rounds,
)
from iii_state_core.transfer.errors import LineProblem
from iii_state_core.transfer.importing import ImportReport
from iii_state_core.transfer.jsonl import iter_encoded

#: Lines of every kind the rounds treat apart, spread over rounds of three.
LINES = [
    encode_line(Entry("s", "new1", {"a": [1, 2.5]})),
    encode_line(Entry("s", "same", [1, 2])),  # the store holds the same value, spelled otherwise
    b"\n",
    encode_line(Entry("t", "new2", "x")),
    encode_line(Entry("s", "other", 10)),  # the store holds 1
    encode_line(Entry("s", "later", 1, now_ms() + 3_600_000)),  # a deadline: the general way
    encode_line(Entry("s", "past", 1, 1)),  # already expired
    b'{ "scope": "u", "key": "spaced", "value": { "b" : 1 , "a" : null } }\n',
    encode_line(Entry("s", "twice", 7)),
    encode_line(Entry("s", "twice", 7)),  # the same key again in one round: the general way
    encode_line(Entry("s", "null", None)),  # the store holds null
    encode_line(Entry("v", "alone", True)),
]


def _prepare(store: StateStore) -> None:
    store.set("s", "same", [1, 2])
    store.adapter.write("s", "same", b"[1, 2]")  # another program's spelling of the same value
    store.set("s", "other", 1)
    store.set("s", "null", None)
    store.adapter.write("s", "new1", b"0", now_ms() - 1)  # expired, maybe not swept yet: missing


@pytest.fixture(params=["file_based", "in_memory"])
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _store(method: str, folder: Path) -> StateStore:
    config = (
        {"store_method": "in_memory"}
        if method == "in_memory"
        else {"store_method": method, "file_path": str(folder)}
    )
    return open_store(adapter="kv", adapter_config=config)


def _run(
    method: str, folder: Path, path: Path, policy: str, big_rounds: bool, **kw: Any
) -> tuple[Any, list[Any]]:
    """The import's outcome (its counts or its error), the store's entries, and the events."""
    events: list[Any] = []
    with _store(method, folder) as store:
        assert rounds.available(store.adapter)
        _prepare(store)
        store.on_change(lambda e: events.append((e.event_type, e.scope, e.key, e.old_value, e.new_value)))
        saved = rounds.available
        rounds.available = (lambda adapter: True) if big_rounds else (lambda adapter: False)  # type: ignore[assignment]
        try:
            outcome: Any = import_file(store, path, policy, **kw).to_dict()
        except (ConflictsFoundError, EntryConflictError, InvalidLinesError) as exc:
            outcome = (type(exc).__name__, str(exc))
        finally:
            rounds.available = saved  # type: ignore[assignment]
        # each entry's exact JSON, and whether it has a deadline (the deadline itself is the time
        # left when written, so it may differ by a millisecond between two imports)
        entries = sorted((encode_line(Entry(*e)), e.expires_at is not None) for e in export_entries(store))
        deadline = store.adapter.read_expiry("s", "later")
    return (outcome, entries, deadline[0]), sorted(events, key=str)


@pytest.mark.parametrize(
    ("policy", "conflicting"), [("fail", False), ("fail", True), ("skip", True), ("overwrite", True)]
)
def test_rounds_give_the_general_paths_counts_entries_and_events(
    method: str, policy: str, conflicting: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rounds, "ROUND", 3)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(line for line in LINES if conflicting or b'"other"' not in line))
    general = _run(method, tmp_path / "general", path, policy, big_rounds=False)
    big = _run(method, tmp_path / "big", path, policy, big_rounds=True)
    if policy == "overwrite":
        # the general path sets, and set cannot tell a stored null from a missing key: it counts
        # null over null as written; the rounds read first and count it unchanged, as documented;
        # and it rewrites a key holding the same value (an event with old == new); the rounds
        # leave such a key alone, as skip and fail do
        (counts, *rest), events = general
        events = [e for e in events if not (e[0] == "state:updated" and e[3] == e[4] and e[2] != "twice")]
        general = (
            ({**counts, "written": counts["written"] - 1, "unchanged": counts["unchanged"] + 1}, *rest),
            events,
        )
    assert big == general
    counts = big[0][0]
    if conflicting and policy == "fail":
        assert counts[0] == "ConflictsFoundError" and "line 5:" in counts[1], counts
        return
    overwrite, skip = policy == "overwrite", policy == "skip"
    assert counts == {"written": 6 + overwrite, "unchanged": 3, "skipped": skip, "invalid": 0, "expired": 1}
    if method == "file_based":  # and again: everything is there now, nothing is written
        with _store(method, tmp_path / "big") as store:
            again = import_file(store, path, policy).to_dict()
        assert again == {**counts, "written": 0, "unchanged": counts["written"] + counts["unchanged"]}


def test_a_bad_line_writes_nothing_unless_skipped(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rounds, "ROUND", 3)
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"".join([*LINES[:4], b'{"scope":"s","key":"bad","value":NaN}\n', b"\xff\n", *LINES[4:]])
    )
    general = _run(method, tmp_path / "general", path, "skip", big_rounds=False)
    big = _run(method, tmp_path / "big", path, "skip", big_rounds=True)
    assert big == general and big[0][0][0] == "InvalidLinesError" and "line 5:" in big[0][0][1]
    assert [json.loads(line)["key"] for line, _ in big[0][1]] == ["null", "other", "same"]  # as before
    general = _run(method, tmp_path / "general2", path, "skip", big_rounds=False, skip_invalid=True)
    big = _run(method, tmp_path / "big2", path, "skip", big_rounds=True, skip_invalid=True)
    assert big == general and big[0][0]["invalid"] == 2


#: Lines each check of the rounds' written-out fast path must judge as parse_encoded does.
TRICKY = [
    b'{"scope":"s","key":"k","value":1}',
    b'{"scope":"s","key":"k","value":1}  \r',
    b'{"scope":"s","key":"k","value":1} x',
    b'{"scope":"s","key":"k","value":NaN}',
    b'{"scope":"s","key":"k","value":[1e999]}',
    b'{"scope":"s","key":"k","value":"\\ud800"}',
    b'{"scope":"s","key":"\\ud800","value":1}',
    b'{"scope":"\xc3\xa9t\xc3\xa9","key":"\xf0\x9f\x98\x80","value":"\xc3\xa9"}',
    b'{"scope":"s","key":"k","value":18446744073709551615}',
    b'{"scope":"s","key":"k","value":18446744073709551616}',
    b'{"scope":"s","key":"k","value":-9223372036854775809}',
    b'{"scope":"s","key":"k","value":{"a":[[[1]]]}}',
    b'{"scope":"s","key":"k","value":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
    b'{"scope":"s","key":"k","value":"' + b"x" * 40 + b'"}',
    b'{"scope":"long-scope-name","key":"k","value":1}',
    b'{"scope":"s","key":"long-key-name","value":1}',
    b'{"scope":"s","key":"k","value":1,"expires_at":null}',
    b'{"scope":"s","key":"k","value":1,"extra":2}',
    b'{"scope":1,"key":"k","value":1}',
    b'{"key":"k","value":1}',
    b"[1]",
    b"\xff",
    b"   ",
]


@pytest.mark.parametrize(
    "limits",
    [
        Limits(Capabilities(ttl="emulated"), adapter_name="kv"),
        Limits(Capabilities(ttl="emulated", max_value_bytes=30), adapter_name="small"),
        Limits(Capabilities(ttl="emulated", max_scope_bytes=8, max_key_bytes=8), adapter_name="short"),
        Limits(Capabilities(ttl="emulated"), adapter_name="kv", max_value_bytes=30, max_depth=3),
    ],
)
def test_read_rounds_judges_every_line_as_parse_encoded_does(limits: Limits) -> None:
    data = b"\n".join(TRICKY) + b"\n"
    expected = list(iter_encoded(io.BytesIO(data), limits))
    report = ImportReport()
    got: list[Any] = []
    for rnd in rounds.read_rounds(io.BytesIO(data), limits, report):
        got += [(n, (s, k, d)) for n, s, k, d in zip(rnd.lines, rnd.scopes, rnd.keys, rnd.datas, strict=True)]
        got += [(n, (e.scope, e.key, d)) for n, e, d in rnd.timed]
    got += [(p.line, p) for p in report.problems]
    want = [
        (n, item if isinstance(item, LineProblem) else (item[0].scope, item[0].key, item[1]))
        for n, item in expected
    ]
    assert sorted(got, key=lambda x: x[0]) == want
    assert report.invalid == sum(isinstance(item, LineProblem) for _, item in expected) >= 9


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_a_key_created_after_a_check_that_found_none_is_never_overwritten(
    policy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writes of a round whose keys were all missing do not read again: ``create_missing``
    refuses the round when another writer created one meanwhile, and the general way decides."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(encode_line(Entry("s", f"k{i}", i)) for i in range(5)))
    real = rounds.check

    def racing(store: StateStore, rnd: rounds.Round, conflicts: list[Any]) -> int:
        found = real(store, rnd, conflicts)
        assert rnd.none_held
        store.set("s", "k3", "theirs")
        monkeypatch.setattr(rounds, "present", lambda *args: pytest.fail("read again"))
        return found

    monkeypatch.setattr(rounds, "check", racing)
    with _store("file_based", tmp_path / "store") as store:
        store.on_change(lambda e: None)  # somebody listens: the general way builds events
        if policy == "fail":
            with pytest.raises(EntryConflictError) as caught:
                import_file(store, path, policy)
            assert (caught.value.line, caught.value.key) == (4, "k3")
        else:
            monkeypatch.setattr(rounds, "check", lambda *args: 0)
            store.delete("s", "k3")
            real_write = rounds.write

            def racing_write(store_: StateStore, report: Any, rnd: rounds.Round, policy_: Any) -> None:
                rnd.none_held = True  # as if a check pass had found none
                store_.set("s", "k3", "theirs")
                monkeypatch.setattr(rounds, "present", lambda *args: pytest.fail("read again"))
                real_write(store_, report, rnd, policy_)

            monkeypatch.setattr(rounds, "write", racing_write)
            assert import_file(store, path, policy).to_dict() == {
                "written": 4, "unchanged": 0, "skipped": 1, "invalid": 0, "expired": 0
            }  # fmt: skip
        assert store.get("s", "k3") == "theirs"
