"""What an adapter is: declared capabilities plus a few storage primitives.

The core (``operations``) owns every semantic rule; an adapter only stores bytes. Values
cross this boundary as compact JSON ``bytes``; scopes and keys as ``str``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, NamedTuple

from .expiry import ExpiresAt

#: An adapter's version token for conditional writes: the raw bytes, a version number, a
#: memcached cas id … The core never looks inside it.
Token = object
#: One listing page: ``(key, raw value)`` pairs and the adapter's next cursor (``None`` = done).
Page = tuple[list[tuple[str, bytes]], "str | None"]
#: One entry ``take_expired`` removed: ``(scope, key, raw value, deadline in epoch ms)``.
Expired = tuple[str, str, bytes, int]
#: One write of ``write_many_if``: ``(scope, key, data or None to delete, expires_at)``.
PlannedWrite = tuple[str, str, "bytes | None", ExpiresAt]
#: One condition of ``write_many_when``: ``(scope, key, the exact bytes expected or None: missing)``.
ByteCondition = tuple[str, str, "bytes | None"]


class Missed(NamedTuple):
    """``write_many_when``'s answer when a condition did not hold: nothing was written."""

    #: The condition's index.
    condition: int
    #: The live bytes found there (``None``: missing).
    found: bytes | None


@dataclass(frozen=True)
class Capabilities:
    """What an adapter promises, declared once on the class and checked by the conformance suite.

    ``None`` for a size means "no limit of its own".
    """

    #: Largest scope, in UTF-8 bytes, the backend can hold; longer is refused with KEY_TOO_LARGE.
    max_scope_bytes: int | None = None
    #: Largest key, in UTF-8 bytes.
    max_key_bytes: int | None = None
    #: Largest stored value (compact JSON bytes); larger is refused with VALUE_TOO_LARGE.
    max_value_bytes: int | None = None
    #: An acknowledged write survives the writing process being killed.
    durable: bool = False
    #: Separate processes (and hosts) that open the same config see one store.
    shared: bool = True
    #: ``native``: the adapter's ``modify`` runs the read-modify-write itself (one atomic step,
    #: or its own compare-and-swap loop); ``emulated``: ``modify`` returns ``None`` and the core
    #: loops over ``read_versioned`` + ``write_if``.
    atomic_update: Literal["native", "emulated"] = "emulated"
    #: ``scan`` pages in a stable key order, so a walk returns each key exactly once.
    ordered_listing: bool = False
    #: The backend may drop entries by itself (memcached eviction).
    may_evict: bool = False
    #: One line on what listing costs, for ``iii-state plugins`` and the docs.
    listing_cost: str = ""
    #: Entry expiry (contract § Expiry). ``native``: the backend drops expired entries itself;
    #: ``emulated``: the adapter stores deadlines and hides expired entries; ``none``: ``ttl_ms``,
    #: ``state::expire`` and ``state::ttl`` are refused with ``UNSUPPORTED``. With ``native`` or
    #: ``emulated`` the write primitives take an ``expires_at`` argument and the adapter
    #: implements ``read_expiry`` and ``set_expiry`` (see :class:`Adapter`).
    ttl: Literal["native", "emulated", "none"] = "none"
    #: Expiry events (contract § Expiry): the longest, in milliseconds, a ``state:expired`` event
    #: may come after its entry's deadline with default settings, when the adapter implements
    #: ``take_expired``. ``None``: no ``take_expired``, so ``expiry_events: true`` is refused.
    #: The core's sweeper polls ``take_expired`` every half of it (at least every 50 ms).
    expiry_event_delay_ms: int | None = None

    #: Most operations one ``state::batch`` takes (contract § Batches); more is refused whole.
    max_batch_ops: int = 1000
    #: ``state::transact`` (contract § Transactions): the adapter implements ``write_many_if``, so
    #: several writes apply all or nothing. ``False``: the call is refused with ``UNSUPPORTED``.
    transactions: bool = False
    #: Most writes plus conditions one transaction takes (DynamoDB's own limit is 100 items).
    max_transaction_ops: int = 100

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Adapter(ABC):
    """Base class of every storage adapter.

    Subclasses set ``name`` and ``capabilities``, build themselves in ``__init__`` from their
    config mapping (use :class:`iii_state_core.options.Options`), and implement the
    primitives below. They raise any exception on failure; the core wraps it into the
    function's ``*_ERROR`` with secrets removed. An exception of
    :class:`~iii_state_core.errors.UnknownOutcomeError` says a write may have been applied.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: The PyPI distribution that ships this adapter (for error messages and ``plugins``).
    distribution: ClassVar[str] = ""
    #: Config options that hold file-system paths. A relative one read from a config file is
    #: taken relative to that file's directory, so a config means one store wherever it is used.
    path_options: ClassVar[tuple[str, ...]] = ()
    #: Settings of the state block itself (beside ``adapter``) that this adapter takes into its
    #: config when that does not set them: the engine's format has kv's ``save_interval_ms`` there.
    state_options: ClassVar[tuple[str, ...]] = ()
    #: ``write_if`` also takes the stored bytes themselves as its token: it writes only if the
    #: entry holds exactly those bytes, and may answer ``False`` without looking (the core then
    #: reads and retries with a ``read_versioned`` token). Compare-and-set then tries one call
    #: before a read and a write. Implied when ``read_versioned`` is the default (its token is
    #: the bytes).
    value_tokens: ClassVar[bool] = False

    @classmethod
    def missing_store(cls, config: Mapping[str, Any]) -> str | None:
        """Why the store ``config`` names does not exist yet (``None``: it exists, or cannot tell).

        Checked without creating anything, so ``export`` and ``migrate`` can refuse to read from a
        store that opening would create empty. Example: ``"/srv/data/state.sqlite3 does not exist"``.
        """
        return None

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        """Build an adapter from its config mapping. Override to pick a subclass by config."""
        return cls(config)  # type: ignore[call-arg]

    # -- reads ---------------------------------------------------------------------------------
    @abstractmethod
    def read(self, scope: str, key: str) -> bytes | None:
        """The stored bytes, or ``None`` when the key is missing."""

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        """The stored bytes and a token that ``write_if`` checks. Default token: the bytes."""
        raw = self.read(scope, key)
        return raw, raw

    # -- writes (each atomic) ------------------------------------------------------------------
    @abstractmethod
    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        """Store ``data``; return exactly the bytes it replaced (``None`` if the key was new)."""

    @abstractmethod
    def remove(self, scope: str, key: str) -> bytes | None:
        """Delete the key; return exactly the bytes removed (``None`` if it was missing)."""

    @abstractmethod
    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        """Store ``data`` only if the entry is still what ``read_versioned`` saw.

        Must write when nothing wrote or deleted the entry since that read; must not when the
        entry now differs from the bytes (or absence) read with ``token`` — rewritten, deleted,
        or deleted and re-created with other bytes. Only an entry back to exactly those bytes
        may go either way. Atomic across threads and processes.

        :param token: from ``read_versioned``; its "missing" form means "only if still missing".
        :returns: ``True`` when written, ``False`` when the entry changed meanwhile.
        """

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes] | None:
        """Optional native atomic read-modify-write.

        ``change`` is pure and may be called more than once. Return ``(old, new)`` of the attempt
        that was written — ``old`` the argument of the *last* ``change`` call, ``new`` its
        result — or ``None`` (without calling ``change``) to let the core run its optimistic
        loop instead (the default).
        """
        return None

    # -- expiry (only when capabilities.ttl is not "none") -----------------------------------
    # With TTL declared, ``write`` takes ``expires_at`` (an absolute deadline in epoch ms, or
    # ``None``: never; default ``None``), and ``write_if`` and ``modify`` take it too, default
    # :data:`~iii_state_core.expiry.KEEP` (leave the entry's deadline). Every read, listing and
    # write treats an entry whose deadline is ``<= expiry.now_ms()`` as missing.

    def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        """``(present, deadline or None)`` of a live entry; ``(False, None)`` when missing or expired."""
        raise NotImplementedError(f"the {self.name} adapter does not declare ttl")

    def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        """Give a live entry a new deadline (``None``: never); ``False`` when missing or expired."""
        raise NotImplementedError(f"the {self.name} adapter does not declare ttl")

    def take_expired(self, limit: int) -> list[Expired]:
        """Optional (declare ``expiry_event_delay_ms``): claim up to ``limit`` entries whose
        deadline is ``<= expiry.now_ms()`` and return them as ``(scope, key, raw value, deadline)``.

        The claim is atomic across threads, processes and hosts: each expired entry is returned
        by exactly one call while its claim holds. Two kinds of claim:

        - *take*: the claim removes the entry (the kv stores: one ``DELETE … RETURNING``). A
          process killed, or a reply lost, between the claim and the handlers loses those events.
        - *lease*: the claim keeps the entry (invisible) marked as leased until a deadline
          (:data:`~iii_state_core.expiry.EXPIRY_LEASE_MS` from the claim unless the adapter's
          config says otherwise); :meth:`ack_expired` removes it once its event was delivered. A
          lease whose holder died or whose reply was lost lapses, and the entry is claimed again
          (delivered later than ``expiry_event_delay_ms``, not lost); only a process killed
          between delivering and acknowledging delivers those entries twice.

        An entry the backend dropped by itself before it was claimed is lost to expiry events, so
        an adapter declaring this must keep expired entries (invisible) until they are claimed.
        Order does not matter; returning fewer than ``limit`` says none are left right now. The
        core's sweeper turns each into one ``state:expired`` event, then calls ``ack_expired``.
        """
        raise NotImplementedError(f"the {self.name} adapter does not take expired entries")

    def ack_expired(self, taken: Sequence[Expired]) -> None:  # noqa: B027 - optional hook
        """Optional (adapters whose ``take_expired`` leases): remove the entries of ``taken`` —
        returned by this adapter's ``take_expired`` — whose events were delivered. Idempotent;
        the default does nothing (a *take* removed them already)."""

    # -- many calls at once (state::batch) ----------------------------------------------------
    def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Optional batch primitive: run primitive calls ``(name, args)``, one round of a batch.

        Returns one item per call, in the calls' order: what the primitive returned, or the
        exception it raised (as a value, not raised). Each call stays atomic on its own and must
        give exactly what calling the primitive alone gives. The core never puts two calls on one
        entry in a round, so they may run in any order or together: override to send them in one
        round trip (a pipeline, a multi-get, one SQLite transaction), and run the calls you do
        not batch through the primitives. A write whose outcome became unknown is an
        :class:`~iii_state_core.errors.UnknownOutcomeError`. The default calls them one by one.
        """
        return [_outcome(self, name, args) for name, args in calls]

    def read_joined(self, scope: str, keys: Sequence[str]) -> str | None:
        """Optional: the live values of ``keys`` (distinct, all in ``scope``) as one JSON array
        text, element *i* being exactly the bytes stored for ``keys[i]`` (``null`` when missing).

        A batch of plain gets of one scope asks it first: the core parses one text instead of a
        value per entry. Answer ``None`` whenever you cannot vouch that every stored value is
        one whole JSON text (a foreign writer's bytes could otherwise run into their neighbour's);
        the core then reads the entries with :meth:`run_many` and checks each value on its own.
        The default answers ``None``.
        """
        return None

    def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        """Optional (declare ``transactions``): apply every write only if no checked entry changed.

        :param checks: ``(scope, key, token)`` from ``read_versioned`` for every entry involved
            (written or only checked); each must still be what that read saw, as for ``write_if``.
        :param writes: ``(scope, key, data, expires_at)``: store ``data`` (``None``: delete the
            entry) with ``expires_at`` as ``write_if`` takes it — a deadline in epoch ms, ``None``
            (none) or :data:`~iii_state_core.expiry.KEEP` (the deadline read, if still live).
        :returns: ``True`` when all were applied in one atomic step, ``False`` (nothing applied)
            when a checked entry changed. Raise :class:`~iii_state_core.errors.UnsupportedError`
            for a set of entries the backend cannot change atomically (Cluster slots).
        """
        raise NotImplementedError(f"the {self.name} adapter does not declare transactions")

    def write_many_when(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed:
        """Optional (with ``transactions``): a transaction of blind writes in one atomic step.

        If every condition's entry holds exactly the bytes given (``None``: is missing), apply every
        write as ``write_many_if`` does and return the live bytes each replaced (``None``: none), in
        the writes' order; else write nothing and return the first condition, in order, that did
        not hold. The core sends it when no write needs the old value first (no ``update``) and
        decides itself whether a miss is a real one (the same JSON spelled otherwise is not; it then
        runs the usual read and ``write_many_if``). Not overriding it keeps that read-then-write
        path. Raise :class:`~iii_state_core.errors.UnsupportedError` as ``write_many_if`` does.
        """
        raise NotImplementedError(f"the {self.name} adapter does not write transactions in one step")

    def modify_many(
        self,
        entries: Sequence[tuple[str, str]],
        change: Callable[[list[bytes | None]], Sequence[PlannedWrite] | None],
    ) -> bool | None:
        """Optional native ``state::transact`` (with ``transactions``): in one atomic step, read the
        live bytes of each ``(scope, key)`` (``None``: missing), call ``change`` with them in that
        order and apply the writes it returns (``None``: apply nothing), as ``write_many_if`` applies
        them. ``change`` is pure and may be called more than once; an exception from it applies
        nothing and propagates.

        :returns: ``True`` when done; ``None`` (the default, without calling ``change``) lets the
            core read the entries, then apply the writes with ``write_many_if``.
        """
        return None

    # -- import in big rounds (an in-process store: no round trip to amortize, fewer commits) --
    def read_present(self, scope: str, keys: Sequence[str]) -> dict[str, bytes]:
        """Optional (with :meth:`create_missing`): the live bytes of each of ``keys`` that ``scope``
        holds, keyed by key (a missing or expired key is left out). ``keys`` has no duplicates.
        ``iii-state import`` reads a round of thousands of keys with it."""
        raise NotImplementedError(f"the {self.name} adapter does not read rounds of keys")

    def create_missing(self, rows: Sequence[tuple[str, str, bytes]]) -> bool:
        """Optional (with :meth:`read_present`): write every ``(scope, key, data)`` (no deadline) in
        one atomic step if none of those keys holds a live value and none comes twice; otherwise
        write nothing and answer ``False`` (also allowed for an expired entry not dropped yet: the
        core then writes the round the general way). ``iii-state import`` writes its rounds of new entries
        with it (thousands of rows: an adapter with a round trip per call gains nothing over
        ``run_many``, so only in-process stores implement it)."""
        raise NotImplementedError(f"the {self.name} adapter does not create rounds of entries")

    # -- listing -------------------------------------------------------------------------------
    @abstractmethod
    def list_scopes(self) -> list[str]:
        """Every scope holding at least one key (order and duplicates do not matter)."""

    def count(self, scope: str) -> int | None:
        """Optional: how many keys ``scope`` holds, cheaply (``list_entries`` reports it as
        ``total``). ``None`` (the default) lets the core count by scanning."""
        return None

    @abstractmethod
    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        """Up to ``limit`` entries of ``scope`` after ``cursor`` (``None`` = from the start).

        Memory must stay bounded by ``limit``. Return ``next_cursor=None`` when done.
        """

    def scan_counted(self, scope: str, limit: int) -> tuple[list[tuple[str, bytes]], str | None, int | None]:
        """Optional: ``scan(scope, None, limit)`` and, when that page does not end the scope,
        ``count(scope)``, as ``(rows, next_cursor, count)``: a walk's first page, which reports
        ``total``. Override it to get both in one step (one script or round trip, or both
        requests at once). ``count`` may be ``None`` when the page ends the scope (the core
        counts the page) or when :meth:`count` would answer ``None``."""
        rows, after = self.scan(scope, None, limit)
        return rows, after, None if after is None else self.count(scope)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files. Called once."""

    def secrets(self) -> list[str]:
        """Strings (passwords, tokens) that must never appear in an error message or log."""
        return []

    def describe(self) -> str:
        """A one-line, secret-free description for logs (``redis at 127.0.0.1:6379``)."""
        return self.name

    def async_twin(self) -> AsyncAdapter | None:
        """A natively async adapter over the same store, or ``None`` to run in threads."""
        return None


class AsyncAdapter(ABC):
    """The awaitable twin of :class:`Adapter`: the same primitives as coroutines."""

    @abstractmethod
    async def read(self, scope: str, key: str) -> bytes | None: ...

    async def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        raw = await self.read(scope, key)
        return raw, raw

    @abstractmethod
    async def write(self, scope: str, key: str, data: bytes) -> bytes | None: ...

    @abstractmethod
    async def remove(self, scope: str, key: str) -> bytes | None: ...

    @abstractmethod
    async def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool: ...

    async def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes]
    ) -> tuple[bytes | None, bytes] | None:
        return None

    async def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        raise NotImplementedError("this adapter does not declare ttl")

    async def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        raise NotImplementedError("this adapter does not declare ttl")

    async def take_expired(self, limit: int) -> list[Expired]:
        raise NotImplementedError("this adapter does not take expired entries")

    async def ack_expired(self, taken: Sequence[Expired]) -> None:  # noqa: B027 - optional hook
        """See :meth:`Adapter.ack_expired`; the default does nothing."""

    async def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """See :meth:`Adapter.run_many`; the default awaits the calls one by one, in order."""
        out: list[Any] = []
        for name, args in calls:
            try:
                out.append(await getattr(self, name)(*args))
            except Exception as exc:
                out.append(exc)
        return out

    async def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        raise NotImplementedError("this adapter does not declare transactions")

    async def read_joined(self, scope: str, keys: Sequence[str]) -> str | None:
        """See :meth:`Adapter.read_joined`; the default answers ``None``."""
        return None

    async def write_many_when(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed:
        raise NotImplementedError("this adapter does not write transactions in one step")

    async def modify_many(
        self,
        entries: Sequence[tuple[str, str]],
        change: Callable[[list[bytes | None]], Sequence[PlannedWrite] | None],
    ) -> bool | None:
        """See :meth:`Adapter.modify_many`."""
        return None

    @abstractmethod
    async def list_scopes(self) -> list[str]: ...

    async def count(self, scope: str) -> int | None:
        return None

    @abstractmethod
    async def scan(self, scope: str, cursor: str | None, limit: int) -> Page: ...

    async def scan_counted(
        self, scope: str, limit: int
    ) -> tuple[list[tuple[str, bytes]], str | None, int | None]:
        """See :meth:`Adapter.scan_counted`."""
        rows, after = await self.scan(scope, None, limit)
        return rows, after, None if after is None else await self.count(scope)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""



def expiry_events_problem(cls: type[Adapter]) -> str | None:
    """Why ``cls`` declares expiry events it cannot deliver (``None``: consistent).

    A :class:`DeferredAdapter` is checked when its implementation is loaded.
    """
    delay = cls.capabilities.expiry_event_delay_ms
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        return f"declares expiry_event_delay_ms={delay!r}; it must be a positive integer or None"
    if cls.capabilities.ttl == "none":
        return "declares expiry_event_delay_ms without ttl: only entries that expire have expiry events"
    if not issubclass(cls, DeferredAdapter) and cls.take_expired is Adapter.take_expired:
        return "declares expiry_event_delay_ms but does not implement take_expired"
    return None


def _outcome(adapter: Adapter, name: str, args: tuple[Any, ...]) -> Any:
    try:
        return getattr(adapter, name)(*args)
    except Exception as exc:
        return exc


class DeferredAdapter(Adapter):
    """What a plugin registers when its implementation imports a heavy client library.

    It declares ``name``, ``capabilities`` (and ``distribution``, ``path_options``) and names the
    implementation as ``"module:Class"``; that module is imported only when a store is opened,
    so loading every installed plugin (each CLI call does) costs no client-library import.
    """

    #: ``"package.module:AdapterClass"``: the real adapter, imported by :meth:`open`.
    implementation: ClassVar[str]

    @classmethod
    def load(cls) -> type[Adapter]:
        """Import the implementation.

        :raises TypeError: when it is not an adapter declaring the same name and capabilities.
        """
        module_name, _, attr = cls.implementation.partition(":")
        found = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(found, type) and issubclass(found, Adapter)) or (
            found.name,
            found.capabilities,
        ) != (cls.name, cls.capabilities):
            raise TypeError(f"{cls.implementation} does not implement the {cls.name!r} adapter declared")
        problem = expiry_events_problem(found)
        if problem:
            raise TypeError(f"{cls.implementation} {problem}")
        return found

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        return cls.load().open(config)

    @classmethod
    def missing_store(cls, config: Mapping[str, Any]) -> str | None:
        return cls.load().missing_store(config)
