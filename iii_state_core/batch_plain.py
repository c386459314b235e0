"""A batch's plain gets, sets and deletes: one round, no plan per operation.

Most batches are many gets or many sets of distinct entries. Each such operation is exactly one
primitive call, so the batch checks it as its single function does, sends every call in one
``RUN_MANY`` and builds each result and event as that function would, without a generator, a
field walk and a round-queue per operation (together they cost more than the store's own work).
Anything else (another function, a ``ttl_ms``, the ``data`` alias, an entry named twice, a scope,
key or value the checks refuse) goes through the plans, which give the same answer and its exact
error: this path only takes operations it would run without an error of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from .driver import RUN_MANY
from .errors import StateError
from .operations import Call, Limits, _decode, _replaced
from .results import SetResult, StateEvent
from .values import _PLAIN_FIRST, _scan_once

if TYPE_CHECKING:
    from .batch import BatchItem

#: Builds a named tuple from its fields without its Python-level ``__new__`` (one per operation).
_new: Any = tuple.__new__


class Plain(NamedTuple):
    """The plain operations, as parallel lists (in batch order)."""

    at: list[int]  # each one's place in the batch
    functions: list[str]  # get, set or delete
    calls: list[Call]
    values: list[Any]  # a set's value (``None`` for the others)


def split(limits: Limits, ops: list[Any]) -> tuple[Plain, list[int]]:
    """The operations that run plain, and the indices of the others (in order)."""
    alike = _alike(limits, ops)
    if alike is not None:
        return alike, []
    caps = limits.capabilities
    most_scope, most_key = caps.max_scope_bytes or 1 << 62, caps.max_key_bytes or 1 << 62
    plain = Plain([], [], [], [])
    at, functions, calls, values = plain
    rest: list[int] = []
    named: set[tuple[str, str]] = set()
    twice: set[tuple[str, str]] = set()
    encode = limits.encode
    for i, op in enumerate(ops):
        if type(op) is not dict:
            rest.append(i)
            continue
        name, scope, key = op.get("op"), op.get("scope"), op.get("key")
        if type(scope) is not str or type(key) is not str:
            rest.append(i)
            continue
        entry = (scope, key)
        if entry in named:
            twice.add(entry)
        named.add(entry)
        # ASCII within the limits passes check_entry; anything else is checked (or refused) by it
        if not (scope.isascii() and key.isascii() and len(scope) <= most_scope and len(key) <= most_key) and (
            not _entry_ok(limits, scope, key)
        ):
            rest.append(i)
            continue
        value = None
        if name == "get":
            call = _new(Call, ("read", entry))
        elif name == "delete":
            call = _new(Call, ("remove", entry))
        elif name == "set" and "value" in op and "data" not in op and op.get("ttl_ms") is None:
            value = op["value"]
            try:
                call = _new(Call, ("write", (scope, key, encode(value))))
            except StateError:
                rest.append(i)
                continue
        else:
            rest.append(i)
            continue
        at.append(i)
        functions.append(name)
        calls.append(call)
        values.append(value)
    if twice:  # an entry's operations run one after another, in order: through the plans
        keep = [n for n, c in enumerate(calls) if (c.args[0], c.args[1]) not in twice]
        rest = sorted(rest + [at[n] for n, c in enumerate(calls) if (c.args[0], c.args[1]) in twice])
        plain = Plain([at[n] for n in keep], [functions[n] for n in keep], [calls[n] for n in keep],
                      [values[n] for n in keep])  # fmt: skip
    return plain, rest


#: An operation's function, scope and key (raises ``KeyError`` when one is absent).
_NAMED = itemgetter("op", "scope", "key")
_OP, _SCOPE, _KEY = itemgetter("op"), itemgetter("scope"), itemgetter("key")
#: A set's value (raises ``KeyError`` when absent). :func:`_alike` takes a set of exactly the fields
#: ``op``, ``scope``, ``key`` and ``value`` (anything more goes through :func:`split`'s loop).
_VALUE = itemgetter("value")
_PRIMITIVE = {"get": "read", "delete": "remove"}
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
#: What a write round answers for each plain set: the bytes it replaced, or ``None``.
_OLD_KINDS = frozenset((bytes, type(None)))


def _alike(limits: Limits, ops: list[Any]) -> Plain | None:
    """The usual batch, checked whole: every operation a plain get, every one a plain set or every
    one a plain delete, of distinct entries with ASCII names within the limits. ``None``: some
    operation is not (the per-operation loop sorts them). The same checks as the loop, made over
    the whole list at once (a Python step per operation cost more than the store's read)."""
    caps = limits.capabilities
    try:
        if not ops or set(map(type, ops)) != {dict}:
            return None
        # a field at a time (no tuple per operation, no zip of a hundred of them)
        kinds = set(map(_OP, ops))
        if len(kinds) != 1:
            return None
        scopes, keys = list(map(_SCOPE, ops)), list(map(_KEY, ops))
    except (KeyError, TypeError):  # a field missing, an unhashable `op`
        return None
    if set(map(type, scopes + keys)) != {str}:
        return None
    (name,) = kinds
    if not ("".join(scopes).isascii() and "".join(keys).isascii()):
        return None
    if (caps.max_scope_bytes is not None and max(map(len, scopes)) > caps.max_scope_bytes) or (
        caps.max_key_bytes is not None and max(map(len, keys)) > caps.max_key_bytes
    ):
        return None
    n = len(ops)
    # one scope (the usual batch): its keys distinct, without a tuple per entry to hash
    one_scope = scopes.count(scopes[0]) == n
    if not (one_scope and len(set(keys)) == n) and len(set(zip(scopes, keys, strict=True))) != n:
        return None  # an entry named twice: its operations run in order, through the plans
    if name == "set":
        if set(map(len, ops)) != {4}:  # op, scope and key are there: the fourth must be value
            return None
        try:
            values = list(map(_VALUE, ops))
            stored = limits.encode_each(values)
        except KeyError:
            return None
        except StateError:
            return None  # the plan words the error
        # Call("write", (scope, key, bytes)) each, built by C iteration (no Python step per operation)
        calls = list(map(_new, repeat(Call), zip(repeat("write"), zip(scopes, keys, stored, strict=True))))
        return Plain(list(range(n)), ["set"] * n, calls, values)
    primitive = _PRIMITIVE.get(name)
    if primitive is None:
        return None
    calls = list(map(_new, repeat(Call), zip(repeat(primitive), zip(scopes, keys, strict=True))))
    return Plain(list(range(n)), [name] * n, calls, [None] * n)


def _entry_ok(limits: Limits, scope: str, key: str) -> bool:
    try:
        limits.check_entry(scope, key)
    except StateError:
        return False  # its plan reports it, worded as the single function words it
    return True


def joined_gets(limits: Limits, ops: list[Any]) -> tuple[str, list[str]] | None:
    """``(scope, keys)`` when every operation is a plain get of one scope, of distinct ASCII keys
    within the limits (what :func:`_alike` takes as gets, all of one scope), checked over the whole
    list without building a call per operation: that batch asks ``read_joined`` first. ``None``
    otherwise (:func:`split` sorts the operations)."""
    caps = limits.capabilities
    try:
        if not ops or type(ops[0]) is not dict or ops[0].get("op") != "get" or set(map(type, ops)) != {dict}:
            return None  # (the first operation's name first: a batch of sets pays nothing more)
        n = len(ops)
        # a field at a time (no tuple per operation, no zip of a hundred of them)
        if list(map(_OP, ops)).count("get") != n:
            return None
        scopes, keys = list(map(_SCOPE, ops)), list(map(_KEY, ops))
    except (KeyError, TypeError):  # a field missing
        return None
    if set(map(type, scopes + keys)) != {str}:
        return None
    scope = scopes[0]
    if (
        scopes.count(scope) != n
        or not (scope.isascii() and "".join(keys).isascii())
        or (caps.max_scope_bytes is not None and len(scope) > caps.max_scope_bytes)
        or (caps.max_key_bytes is not None and max(map(len, keys)) > caps.max_key_bytes)
        or len(set(keys)) != n  # an entry named twice: its operations run in order, through the plans
    ):  # fmt: skip
        return None
    return scope, keys


def read_joined(scope: str, keys: list[str]) -> Generator[Call, Any, list[BatchItem] | None]:
    """The gets of ``keys`` in ``scope`` (:func:`joined_gets`) as one ``read_joined`` call: one text
    parsed at once, where :func:`_got` parses a value per entry. ``None``: the adapter could not
    vouch for its text, or a value needs the per-value way (then :func:`run_plain` reads them)."""
    from .batch import BatchItem

    text = yield _new(Call, ("read_joined", (scope, keys)))
    if type(text) is not str:
        return None
    try:  # every element is one whole stored value (the adapter checked): the same objects
        values, end = _scan_once(text, 0)  # as decoding each value alone gives
    except Exception:
        return None  # a value decode_stored refuses (NaN, a number no double holds): each alone says which
    if end != len(text) or type(values) is not list or len(values) != len(keys):
        return None
    return list(map(_new, repeat(BatchItem), zip(repeat("get"), values, repeat(None))))


def run_plain(
    plain: Plain,
    located: Callable[[int, str, StateError], StateError],
    listening: Callable[[], bool] | None = None,
) -> Generator[Call, Any, tuple[list[BatchItem], list[tuple[int, StateEvent]]]]:
    """One round for every plain operation: one :class:`BatchItem` each (in order), and the
    events ``(place in the batch, event)`` in order.

    :param located: ``located(index, function, error)`` names the operation in an error's message.
    :param listening: ``Limits.listening``: when it answers ``False`` no event is built (nobody
        would receive one).
    """
    from .batch import BatchItem  # batch imports this module

    answers = yield _new(Call, (RUN_MANY, (plain.calls, plain.functions)))
    if plain.functions.count("get") == len(answers):
        return _got(plain, answers, located), []
    wanted = listening is None or listening()
    if not wanted and plain.functions.count("set") == len(answers):
        olds = _decoded_plainly(answers)
        if olds is not None:  # every set done, each old value the core's own JSON (or none)
            results = _set_results(olds, plain.values)
            return list(map(_new, repeat(BatchItem), zip(repeat("set"), results, repeat(None)))), []
    items: list[BatchItem] = []
    append = items.append
    events: list[tuple[int, StateEvent]] = []
    for at, function, call, value, raw in zip(*plain, answers, strict=True):
        # decode_stored's fast path, inlined (a call per entry cost a tenth of the batch)
        fast = False
        if type(raw) is bytes and raw and raw[0] in _PLAIN_FIRST and (len(raw) == 1 or raw[1]):
            try:
                text = raw.decode("utf-8", "surrogatepass")
                decoded, end = _scan_once(text, 0)
                fast = end == len(text)
            except Exception:
                pass  # decode_stored says what is wrong
        if function == "get":
            if raw is None or fast:
                append(_new(BatchItem, ("get", decoded if fast else None, None)))
            elif isinstance(raw, StateError):
                append(_new(BatchItem, ("get", None, located(at, "get", raw))))
            else:
                try:
                    append(_new(BatchItem, ("get", _decode("get", call.args[0], call.args[1], raw), None)))
                except StateError as exc:
                    append(_new(BatchItem, ("get", None, located(at, "get", exc))))
            continue
        if isinstance(raw, StateError):
            append(_new(BatchItem, (function, None, located(at, function, raw))))
            continue
        scope, key = call.args[0], call.args[1]
        old = decoded if fast else None if raw is None else _replaced(function, scope, key, raw)
        if function == "set":
            append(_new(BatchItem, ("set", SetResult(old, value), None)))
            if wanted:
                kind: Any = "state:created" if raw is None else "state:updated"  # as _written says
                events.append((at, StateEvent(kind, scope, key, old, value)))
        else:
            append(_new(BatchItem, ("delete", old, None)))
            if wanted:
                events.append((at, StateEvent("state:deleted", scope, key, old, None)))
    return items, events


#: Fill a new ``SetResult``'s fields through their slots: the frozen dataclass's ``__init__`` (a
#: ``object.__setattr__`` per field) cost more per set than its share of the store's write.
_set_old: Any = vars(SetResult)["old_value"].__set__
_set_new: Any = vars(SetResult)["new_value"].__set__


def _set_results(olds: list[Any], values: list[Any]) -> list[SetResult]:
    """``SetResult(old, value)`` of each pair, built by C iteration."""
    results: list[SetResult] = list(map(object.__new__, repeat(SetResult, len(olds))))
    for _ in map(_set_old, results, olds):
        pass
    for _ in map(_set_new, results, values):
        pass
    return results


def _decoded_plainly(raws: list[Any]) -> list[Any] | None:
    """Each old value (``None``: there was none) when every one is bytes that parse whole by
    :func:`decode_stored`'s fast path, decoded and parsed by C iteration; ``None`` when some answer
    is an error or needs the slow, exact way (the round's loop then takes each alone).

    The fast path's first-byte checks need no repeating: a value that starts with whitespace or a
    BOM, or holds a NUL (json.loads' UTF-16 guess), does not parse whole as strict UTF-8 JSON."""
    kinds = set(map(type, raws))
    if not kinds <= _OLD_KINDS:
        return None
    present = raws if type(None) not in kinds else [raw for raw in raws if raw is not None]
    try:
        texts = list(map(bytes.decode, present, repeat("utf-8"), repeat("surrogatepass")))
        parsed = list(map(_scan_once, texts, repeat(0)))
    except Exception:
        return None
    if list(map(_SECOND, parsed)) != list(map(len, texts)):
        return None
    values = list(map(_FIRST, parsed))
    if present is raws:
        return values
    each = iter(values)
    return [None if raw is None else next(each) for raw in raws]


def _got(
    plain: Plain, answers: list[Any], located: Callable[[int, str, StateError], StateError]
) -> list[BatchItem]:
    """:func:`run_plain`'s loop for a round of gets only (the usual read batch): no events."""
    from .batch import BatchItem

    missing = BatchItem("get")  # one for every missing entry: a tuple is never changed
    items: list[BatchItem] = []
    append = items.append
    odd = False  # some entry needs the slow, exact way
    for raw in answers:
        if raw is None:
            append(missing)
            continue
        # decode_stored's fast path, inlined (a call per entry cost a tenth of the batch)
        if type(raw) is bytes and raw and raw[0] in _PLAIN_FIRST and (len(raw) == 1 or raw[1]):
            try:
                text = raw.decode("utf-8", "surrogatepass")
                decoded, end = _scan_once(text, 0)
                if end == len(text):
                    append(_new(BatchItem, ("get", decoded, None)))
                    continue
            except Exception:
                pass  # decode_stored says what is wrong
        append(missing)  # replaced below
        odd = True
    for n, raw in enumerate(answers if odd else ()):
        if items[n] is missing and raw is not None:
            at, call = plain.at[n], plain.calls[n]
            if isinstance(raw, StateError):
                items[n] = _new(BatchItem, ("get", None, located(at, "get", raw)))
                continue
            try:
                items[n] = _new(BatchItem, ("get", _decode("get", call.args[0], call.args[1], raw), None))
            except StateError as exc:
                items[n] = _new(BatchItem, ("get", None, located(at, "get", exc)))
    return items
