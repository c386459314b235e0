"""The file store's batch of gets (``read_joined``: one query, one text for the core to parse)
gives each single get's answer, whatever bytes another program stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kv_helpers import file_config

from iii_state_core import StateError, StateStore, open_store
from iii_state_core.expiry import now_ms

#: Stored bytes (written under the core's checks) and what each means alone.
FOREIGN: dict[str, bytes] = {
    "split": b"1,2",  # two values in one: joined, it would shift every value after it
    "open": b"[3",  # with "close" it would read as one value
    "close": b"4]",
    "nan": b"NaN",
    "huge": b"1e400",
    "not-utf8": b'"\xff"',
    "surrogate": b'"\xed\xa0\x80"',  # an encoded lone surrogate: not UTF-8, yet decodable
    "spaced": b" 7 ",
    "bom": b"\xef\xbb\xbf8",
    "escape": b'"a\\"',
    "nul": b"1\x00",
    "empty": b"",
}
PLAIN: dict[str, bytes] = {
    "one": b"1", "float": b"1.0", "big": b"123456789012345678", "null": b"null",
    "text": '"é\\u00e9\\ud800"'.encode(), "nested": b'{"a":[1,{"b":[]}],"c":"}],["}', "false": b"false",
}  # fmt: skip


def _wire(store: StateStore, ops: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """The batch's answers, and each single get's (errors as the batch words them)."""
    batched = store.trigger({"function_id": "state::batch", "payload": {"ops": ops}})
    singles: list[Any] = []
    for n, op in enumerate(ops):
        try:
            payload = {"scope": op["scope"], "key": op["key"]}
            singles.append(store.trigger({"function_id": "state::get", "payload": payload}))
        except StateError as exc:
            singles.append({"error": {"code": exc.code, "message": f"ops[{n}] (get): {exc.message}"}})
    return batched, singles


@pytest.mark.parametrize("odd", [None, *FOREIGN])
def test_a_batch_of_gets_gives_each_single_gets_answer(tmp_path: Path, odd: str | None) -> None:
    with open_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
        adapter = store.adapter
        for key, data in PLAIN.items():
            adapter.write("s", key, data)
        adapter.write("s", "expired", b"5", now_ms() - 1)
        adapter.write("t", "other scope", b"6")
        keys = [*PLAIN, "expired", "missing", "other scope", 'quote"back\\slash']
        if odd is not None:
            adapter.write("s", odd, FOREIGN[odd])
            keys.insert(3, odd)
            if odd == "open":
                adapter.write("s", "close", FOREIGN["close"])
                keys.insert(4, "close")
        batched, singles = _wire(store, [{"op": "get", "scope": "s", "key": k} for k in keys])
        assert batched == singles
        text = adapter.read_joined("s", keys)
        if odd is None:  # the one query answered: every value vouched for, in order
            assert text is not None and batched[0] == 1 and batched[keys.index("null")] is None
        elif odd in ("split", "open", "escape", "empty"):  # bytes that would run into their neighbours
            assert text is None  # (the others the core's own parse refuses, or reads as alone)


def test_read_joined_answers_none_for_keys_a_json_string_could_change(tmp_path: Path) -> None:
    with open_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
        store.set("s", "a\x00b", 1)
        store.set("s", "é", 2)
        store.set("s", "plain", 3)
        assert store.adapter.read_joined("s", ["plain", "a\x00b"]) is None
        assert store.adapter.read_joined("s", ["é"]) is None
        assert store.adapter.read_joined("s", ["plain", "nothing"]) == "[3,null]"
        got = store.batch([{"op": "get", "scope": "s", "key": k} for k in ("plain", "a\x00b", "é")])
        assert [item.result for item in got] == [3, 1, 2]


def test_an_async_store_reads_the_same_batch(tmp_path: Path) -> None:
    import asyncio

    from iii_state_core import open_async_store

    ops = [{"op": "get", "scope": "s", "key": k} for k in ("a", "b", "missing")]

    async def run() -> list[Any]:
        async with open_async_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
            await store.set("s", "a", {"n": 1})
            await store.set("s", "b", [1.0])
            return [item.result for item in await store.batch(ops)]

    assert asyncio.run(run()) == [{"n": 1}, [1.0], None]


def test_an_in_memory_round_with_deadlines_about_reads_and_clears_them_as_single_calls() -> None:
    """A round runs in bulk while entries have deadlines: expired ones read as missing, a plain set
    clears the deadline of what it overwrites, and the others keep theirs."""
    from iii_state_kvfile import KvMemoryStore

    store = KvMemoryStore()
    store.write("s", "gone", b"1", now_ms() - 1)
    store.write("s", "timed", b"2", now_ms() + 3_600_000)
    store.write("s", "kept", b"3", now_ms() + 3_600_000)
    store.write("s", "plain", b"4")
    names = ("gone", "timed", "plain")
    assert store.run_many([("read", ("s", k)) for k in names]) == [None, b"2", b"4"]
    assert store.run_many([("write", ("s", k, b"5")) for k in names]) == [None, b"2", b"4"]
    assert [store.read_expiry("s", k) for k in names] == [(True, None)] * 3
    assert store.read_expiry("s", "kept")[1] is not None


def test_batch_writes_and_import_rows_store_blobs_found_by_single_gets(tmp_path: Path) -> None:
    """The multi-row upsert binds names as text cast to a BLOB and values as ``bytearray``, and
    ``create_missing`` its values as ``bytearray``: every column must still hold a BLOB, as a
    single set writes it (a TEXT key would never equal the BLOB a get looks for)."""
    with open_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
        names = ["plain", "é", 'quote"'] + [f"k{i}" for i in range(300)]  # > one statement's 250 rows
        for scope in ("s", "ß"):  # a printable ASCII round (joined) and one that is not
            items = store.batch([{"op": "set", "scope": scope, "key": k, "value": [k]} for k in names])
            assert all(item.ok for item in items)
        store.adapter.write("t", "expiring", b"1", now_ms() + 60_000)  # a round with a deadline row
        assert all(
            i.ok
            for i in store.batch(
                [{"op": "set", "scope": "t", "key": k, "value": 2} for k in ("expiring", "x")]
            )
        )
        assert store.adapter.create_missing([("u", "new", b'{"n":1}'), ("u", "ü", b"[]")])
        kinds = store.adapter._db.execute(  # type: ignore[attr-defined]
            "SELECT DISTINCT typeof(scope), typeof(key), typeof(value) FROM entries"
        ).fetchall()
        assert kinds == [("blob", "blob", "blob")]
        for scope in ("s", "ß"):
            assert [store.get(scope, k) for k in names] == [[k] for k in names]
            assert store.get_many(scope, names) == {k: [k] for k in names}
        assert (store.get("t", "expiring"), store.get("t", "x")) == (2, 2)
        assert (store.get("u", "new"), store.get("u", "ü")) == ({"n": 1}, [])


def test_joined_rows_are_put_in_the_keys_order_when_sqlite_gives_another(tmp_path: Path) -> None:
    """The write round's read of the old rows has no ``ORDER BY`` (a sort in a temporary b-tree):
    rows that came in another order are sorted by their key's place, so each old value is its own
    key's; a round's old values are each entry's, as single sets return them."""
    from iii_state_kvfile.file_store import _in_order

    rows = [(n, f"v{n}".encode(), None) for n in range(5)]
    assert _in_order([rows[3], rows[0], rows[4], rows[1], rows[2]]) == rows
    assert _in_order(list(rows)) == rows
    with open_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
        keys = [f"k{n}" for n in range(120)]
        for k in keys[::3]:
            store.set("s", k, {"was": k})
        items = store.batch([{"op": "set", "scope": "s", "key": k, "value": n} for n, k in enumerate(keys)])
        assert [item.result.old_value for item in items] == [
            {"was": k} if n % 3 == 0 else None for n, k in enumerate(keys)
        ]


def test_a_write_round_stores_each_values_exact_bytes_as_a_blob(tmp_path: Path) -> None:
    """A round of plain writes binds UTF-8 values as text cast to a BLOB and the others as
    ``bytearray``: either way the row holds the exact bytes (a NUL, an encoded lone surrogate, bytes
    that are not UTF-8) as a BLOB, as a single write stores them."""
    odd = [b"1\x00", b'"\xed\xa0\x80"', b'"\xff"', b"", '"é"'.encode(), b'{"a":[1]}']
    with open_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
        adapter = store.adapter
        for round_ in ([odd[0], odd[4], odd[5]], odd):  # all UTF-8 (text), then some not (bytearray)
            keys = [f"k{n}" for n in range(len(round_))]
            adapter.run_many([("write", ("s", k, v)) for k, v in zip(keys, round_, strict=True)])
            assert [adapter.read("s", k) for k in keys] == round_
        kinds = adapter._db.execute(  # type: ignore[attr-defined]
            "SELECT DISTINCT typeof(value) FROM entries"
        ).fetchall()
        assert kinds == [("blob",)]
