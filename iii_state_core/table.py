"""The function table's machinery: what a declaration holds and everything derived from it.

A state function is one :class:`StateFunction`: its id, payload :class:`Field` s, error code and
failure text, its plan, its result's wire form, its docs row and (optionally) its CLI command.
From the table come ``store.trigger`` (payload decoding, result encoding), the typed methods of
the sync and async stores, the worker's registrations and request schemas, the CLI subcommands
and the function table of ``docs/contract.md``. The built-in declarations are in
:mod:`iii_state_core.functions`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, ParamSpec, TypeVar, overload

from .errors import DeserializationError, StateError
from .values import json_type

if TYPE_CHECKING:  # the plans look their functions' error codes up here: no import at run time
    from .operations import Limits, Plan

P = ParamSpec("P")
R = TypeVar("R")

#: A JSON schema that accepts any value.
ANY: Final[Mapping[str, Any]] = {}
STRING: Final[Mapping[str, Any]] = {"type": "string"}
_KIND_NAMES: Final[dict[type, str]] = {str: "a string", list: "an array", bool: "a boolean"}


class UnknownFunctionError(StateError, LookupError):
    code = "function_not_found"


@dataclass(frozen=True)
class Field:
    """One payload field, passed to the plan as the keyword argument of the same name."""

    name: str
    #: JSON schema of the value, for the worker's ``request_format``.
    schema: Mapping[str, Any] = field(default_factory=dict)
    required: bool = True
    #: Other names the engine accepts for it (``data`` for ``value``); at most one may be given.
    aliases: tuple[str, ...] = ()
    #: Checked before the plan runs, with a wire-shaped message (``str`` or ``list``).
    kind: type | None = None
    #: ``null`` counts as absent (the plan's default applies).
    null_is_absent: bool = False
    #: On the command line the argument is JSON (a value, an ops list) rather than plain text.
    json: bool = False
    #: The plan's keyword for it, when not ``name`` (``_caller_worker_id`` is ``caller``).
    param: str | None = None
    #: What a wire payload without the field passes (a typed call passes nothing, so the plan's
    #: own default applies): lets the wire and the typed method default differently.
    wire_default: Any = None
    has_wire_default: bool = False
    #: Derived (set after init): the plan's keyword; whether a present value is taken as it is
    #: (no aliases, ``null`` not absent); whether an absent one is simply left out. Lets
    #: :meth:`StateFunction.decode` take the usual fields without a call per field.
    keyword: str = field(init=False, repr=False, compare=False)
    plain: bool = field(init=False, repr=False, compare=False)
    omit_if_absent: bool = field(init=False, repr=False, compare=False)
    #: Its one alias, when it has exactly one and ``null`` is not absent (``value``'s ``data``):
    #: then a present value is taken as it is unless the alias is given too.
    only_alias: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword", self.param or self.name)
        object.__setattr__(self, "plain", not self.aliases and not self.null_is_absent)
        one = len(self.aliases) == 1 and not self.null_is_absent
        object.__setattr__(self, "only_alias", self.aliases[0] if one else None)
        object.__setattr__(
            self, "omit_if_absent", not self.aliases and not self.required and not self.has_wire_default
        )

    def take(self, payload: Mapping[str, Any], into: dict[str, Any]) -> None:
        """Put this field's value from ``payload`` into the plan's keyword arguments."""
        name = self.name
        if self.aliases:
            given = [n for n in (name, *self.aliases) if n in payload]
            if len(given) > 1:
                alias = ", ".join(f"`{n}`" for n in given[1:])
                raise DeserializationError(f"give `{name}` or its old alias {alias}, not both")
            found = given[0] if given else None
        else:  # most fields: one membership test, no list (this runs for every field of every call)
            found = name if name in payload else None
        if found is None or (self.null_is_absent and payload[found] is None):
            if self.required:
                raise DeserializationError(f"missing field `{name}`")
            if self.has_wire_default:
                into[self.param or name] = self.wire_default
            return
        value = payload[found]
        if self.kind is not None and not isinstance(value, self.kind):
            kind = _KIND_NAMES[self.kind]
            raise DeserializationError(f"field `{name}` must be {kind}, got {json_type(value)}")
        into[self.param or name] = value


@dataclass(frozen=True)
class Command:
    """The CLI subcommand of a function: required fields are arguments, optional ones options."""

    name: str
    help: str


class SyncFront:
    """Marks a front end whose generated methods return results (:class:`StateStore`)."""


class AsyncFront:
    """Marks a front end whose generated methods are coroutines (:class:`AsyncStateStore`)."""


class StateFunction(Generic[P, R]):
    """One state function. As a class attribute of a front end it is that front's typed method.

    :param id: the name after ``state::`` (``set``, ``list_entries``, ``compare-and-set``).
    :param plan: ``plan(limits, **fields)``; its parameters after ``limits`` are the typed
        method's, and the payload fields are passed by name.
    :param fields: the payload fields; ``None`` passes the whole payload as the plan's one
        argument (functions whose payload is not a flat record, e.g. a trigger condition).
    :param result: the wire form of the plan's result; its parameter type is the typed result.
    :param payload_doc, result_doc: the two cells of its row in docs/contract.md.
    :param extension: not one of the engine's functions (marked **ext** in the docs).
    :param method: the typed method's name (default: the attribute name, or ``id`` with ``_``).
    :param scopes_in: the scopes a payload names, when not its ``scope`` field (``state::batch``).
    """

    def __init__(
        self,
        id: str,
        *,
        description: str,
        plan: Callable[Concatenate[Limits, P], Plan],
        fields: Sequence[Field] | None,
        error_code: str,
        failure_text: str,
        payload_doc: str,
        result_doc: str,
        result: Callable[[R], Any],
        extension: bool = False,
        command: Command | None = None,
        method: str | None = None,
        scopes_in: Callable[[Mapping[str, Any]], Iterable[tuple[str, object]]] | None = None,
    ) -> None:
        self.id = id
        self.description = description
        self.plan = plan
        self.fields = None if fields is None else tuple(fields)
        self.error_code = error_code
        self.failure_text = failure_text
        self.payload_doc = payload_doc
        self.result_doc = result_doc
        self.to_wire = result
        self.extension = extension
        self.command = command
        self.method = method or id.replace("-", "_")
        self._scopes_in = scopes_in
        self._has_scope = bool(self.fields) and any(f.name == "scope" for f in self.fields or ())
        #: The only scope a payload names is its ``scope`` field (the usual case: the wire's
        #: reserved-scope check reads that field without calling :meth:`scopes_in`).
        self.scope_field_only = self._has_scope and scopes_in is None

    def scopes_in(self, payload: Mapping[str, Any]) -> Iterable[tuple[str, object]]:
        """``(where, scope)`` of each scope a payload names, for the wire's reserved-scope check."""
        if self._scopes_in is not None:
            return self._scopes_in(payload)
        if self._has_scope:
            return [("", payload.get("scope"))]
        return []

    @property
    def function_id(self) -> str:
        return f"state::{self.id}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.method = name
        register(self)

    # The typed method, as type checkers see it; at run time `serve` installs real functions.
    @overload
    def __get__(self, obj: None, owner: type) -> StateFunction[P, R]: ...
    @overload
    def __get__(self, obj: SyncFront, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, obj: AsyncFront, owner: type) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, obj: object, owner: type) -> Any:
        if obj is None:
            return self
        raise TypeError(f"{type(obj).__name__} does not serve state functions")  # not a front end

    # -- derived forms ----------------------------------------------------------------------------
    def decode(self, limits: Limits, payload: Mapping[str, Any]) -> Plan:
        """The plan for a wire payload (already known to be an object)."""
        plan: Callable[..., Plan] = self.plan
        if self.fields is None:
            return plan(limits, payload)
        kwargs: dict[str, Any] = {}
        for f in self.fields:
            # Field.take's usual outcomes inline (this runs for every field of every call): a
            # plain field present with the right kind, or an optional one absent. Anything else,
            # errors included, goes through take.
            name = f.name
            if name in payload:
                if f.plain or (f.only_alias is not None and f.only_alias not in payload):
                    value = payload[name]
                    kind = f.kind
                    if kind is None or isinstance(value, kind):
                        kwargs[f.keyword] = value
                        continue
            elif f.omit_if_absent:
                continue
            f.take(payload, kwargs)
        return plan(limits, **kwargs)

    def request_format(self) -> dict[str, Any]:
        """The JSON schema of the payload, for the worker's registration."""
        if self.fields is None:
            return {"type": "object"}
        properties: dict[str, Any] = {}
        for f in self.fields:
            for name in (f.name, *f.aliases):
                properties[name] = dict(f.schema)
        # additionalProperties stays open: unknown payload fields are ignored (contract § Functions).
        required = [f.name for f in self.fields if f.required and not f.aliases]
        return {"type": "object", "properties": properties, "required": required}

    def doc_row(self) -> str:
        ext = " **ext**" if self.extension else ""
        return f"| `{self.function_id}`{ext} | {self.payload_doc} | {self.result_doc} | `{self.error_code}` |"

    def __repr__(self) -> str:
        return f"<StateFunction {self.function_id}>"


#: Every state function, by id, in declaration order.
TABLE: dict[str, StateFunction[Any, Any]] = {}
MethodMaker = Callable[[StateFunction[Any, Any]], Callable[..., Any]]
_fronts: list[tuple[type, MethodMaker]] = []


def register(function: StateFunction[Any, Any]) -> StateFunction[Any, Any]:
    """Add a function to the table and give every front end its method.

    :raises ValueError: when the id or the method name is taken by another function.
    """
    if function.id in TABLE and TABLE[function.id] is not function:
        raise ValueError(f"state::{function.id} is declared twice")
    for other in TABLE.values():
        if other.method == function.method and other is not function:
            raise ValueError(
                f"state::{function.id} and {other.function_id} both want the method {function.method!r}"
            )
    TABLE[function.id] = function
    for cls, make in _fronts:
        _install(cls, make, function)
    return function


def unregister(function_id: str) -> None:
    """Remove a function (tests that declare a throwaway one)."""
    function = TABLE.pop(function_id)
    for cls, _ in _fronts:
        if function.method in cls.__dict__:
            delattr(cls, function.method)


def serve(cls: type, make: MethodMaker) -> None:
    """Give front end ``cls`` a method per function, now and for functions registered later."""
    _fronts.append((cls, make))
    for function in TABLE.values():
        _install(cls, make, function)


def _install(cls: type, make: MethodMaker, function: StateFunction[Any, Any]) -> None:
    method = make(function)
    method.__name__ = function.method
    method.__qualname__ = f"{cls.__name__}.{function.method}"
    method.__doc__ = function.description
    method.__signature__ = _method_signature(function)  # type: ignore[attr-defined]
    setattr(cls, function.method, method)


def _method_signature(function: StateFunction[Any, Any]) -> inspect.Signature:
    signature = inspect.signature(function.plan)
    parameters = list(signature.parameters.values())[1:]  # after the plan's `limits`
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return signature.replace(parameters=[self, *parameters])


def function(function_id: str) -> StateFunction[Any, Any]:
    """:raises UnknownFunctionError: naming the functions there are."""
    found = TABLE.get(function_id)
    if found is None:
        raise UnknownFunctionError(
            f"state::{function_id} is not a state function; use one of {', '.join(function_ids())}"
        )
    return found


def function_ids() -> list[str]:
    return [f.function_id for f in TABLE.values()]


def markdown_table() -> str:
    """The function table of docs/contract.md § Functions."""
    rows = ["| function | payload | result | error code |", "|---|---|---|---|"]
    return "\n".join([*rows, *(f.doc_row() for f in TABLE.values())])
