"""``store_method: file_based``: one SQLite database in WAL mode under ``file_path``.

Why SQLite: it is in the standard library, every write is one short transaction (no
whole-scope rewrite), its journal survives a SIGKILL at any moment, and several processes
can share the file through its locks. See the plugin README for the measurements.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from iii_state_core import Adapter, BackendError, Capabilities, ConfigError, Options
from iii_state_core.adapter import Expired, Page, PlannedWrite, Token
from iii_state_core.expiry import EXPIRY_LEASE_MS, KEEP, ExpiresAt, now_ms, resolve_expiry

from . import cursors
from .memory_store import KvMemoryStore

log = logging.getLogger("iii_state.kv")

DB_FILE = "state.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    scope BLOB NOT NULL,
    key   BLOB NOT NULL,
    value BLOB NOT NULL,
    expires INTEGER,
    sweep_at INTEGER,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID
"""
# ``expires``: the entry's deadline in epoch milliseconds, NULL for none. A row whose deadline is
# not after "now" is missing for every query (``_LIVE``), whether or not a sweep deleted it yet.
# ``sweep_at``: when a sweep should look at the row, never after ``expires`` (NULL: no look
# needed), and the only indexed one of the two. A write that moves a deadline later leaves it
# alone (``_UPSERT``), so rewriting an entry with a TTL costs no index update, as one without;
# the sweep moves a ``sweep_at`` that came early up to the row's deadline (``_SWEEP_LATER``).
_LIVE = "(expires IS NULL OR expires > ?)"
# Expired entries a write or delete met before a sweeper took them, kept (with expiry events on)
# so that ``take_expired`` still returns them: the row in ``entries`` is about to be replaced.
# ``leased_until``: with expiry events, the sweeper's claim (``take_expired``) moves an expired
# row here leased until then; ``ack_expired`` deletes it, and a lease that ended unacknowledged
# (its sweeper died) is claimed again.
_KEPT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS expired (scope BLOB NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, "
    "expires INTEGER NOT NULL, leased_until INTEGER)"
)
_KEEP_EXPIRED = (
    "INSERT INTO expired (scope, key, value, expires) SELECT scope, key, value, expires FROM entries "
    "WHERE scope = ? AND key = ? AND expires <= ?"
)
_KEEP_ROW = "INSERT INTO expired (scope, key, value, expires) VALUES (?, ?, ?, ?)"
_FIRST_DUE = "SELECT MIN(sweep_at) FROM entries WHERE sweep_at IS NOT NULL"  # the sweep index's first
#: Scopes whose last count ``count`` keeps (oldest dropped first).
_COUNTS_KEPT = 256
_NEVER = 2**63
_COUNT_ALL = "SELECT COUNT(*) FROM entries WHERE scope = ?"
_COUNT_LIVE = f"SELECT COUNT(*) FROM entries WHERE scope = ? AND {_LIVE}"
_ANY_EXPIRED = (
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM expired WHERE leased_until IS NULL OR leased_until <= ?1) "
    "OR EXISTS (SELECT 1 FROM entries WHERE sweep_at <= ?1)"
)
# A claim's rows come back as ``rowid, scope, key, value, expires`` with the names as text (the
# sqlite3 module decodes them, in C): each row past its rowid is the ``Expired`` tuple as it is.
_CLAIMED = "RETURNING rowid, CAST(scope AS TEXT), CAST(key AS TEXT), value, expires"
_LEASE_KEPT = (
    "UPDATE expired SET leased_until = ? WHERE rowid IN (SELECT rowid FROM expired "
    f"WHERE leased_until IS NULL OR leased_until <= ? LIMIT ?) {_CLAIMED}"
)
_TAKE_DUE = (
    "DELETE FROM entries WHERE (scope, key) IN (SELECT scope, key FROM entries "
    "WHERE sweep_at <= ? AND expires <= ? ORDER BY sweep_at LIMIT ?) "
    "RETURNING scope, key, value, expires"
)
# ``ORDER BY sweep_at``, not ``expires``: the sweep index's own order, so a claim reads ``limit``
# rows of the index instead of sorting every due row (a due row's sweep_at is at most its deadline).
# With expiry events the claim copies the due rows into ``expired`` leased, inside SQLite (one
# statement, the GIL released, no row passing through Python on the way), then reads them back
# with their rowids for the acknowledgement; the copies' rowids follow every other row's (no row
# has the largest rowid SQLite can give), so ``_DROP_LEASED`` finds the claimed rows by that range.
_LEASE_DUE = (
    "INSERT INTO expired (scope, key, value, expires, leased_until) SELECT scope, key, value, expires, ?1 "
    "FROM entries WHERE sweep_at <= ?2 AND expires <= ?2 ORDER BY sweep_at LIMIT ?3"
)
# The copies read back by their rowids, those after the largest one before the claim: SQLite
# gives each new row the largest rowid plus one, up to its largest possible rowid (then at
# random: a claim near it takes ``_LEASE_DUE_RETURNING`` instead), so the copies' rowids are
# the next ones in order and are not read back. Cheaper than ``RETURNING``, which buffers each
# row before handing it out.
_LARGEST_EXPIRED = "SELECT max(rowid) FROM expired"
_COPIES_AFTER = (
    "SELECT CAST(scope AS TEXT), CAST(key AS TEXT), value, expires FROM expired "
    "WHERE rowid > ? ORDER BY rowid"
)
_LEASE_DUE_RETURNING = f"{_LEASE_DUE} {_CLAIMED}"
_LARGEST_ROWID = 2**63 - 1
# The acknowledgement: the rows of one claim (lease end first) as runs of consecutive rowids (a
# claim's copies are one run; rows a write kept, claimed with them, are not), at most
# ``_ACK_RUNS`` per statement (SQLite < 3.32 allows 999 variables). A range costs SQLite about
# half of what a ``rowid IN (…)`` list of the same rows did.
_ACK_LEASED = "DELETE FROM expired WHERE leased_until = ? AND ({runs})"
_ACK_RUNS = 200


def _runs(rowids: list[int]) -> list[int]:
    """``rowids`` (sorted, distinct) as the first and last of each run of consecutive ones, flat."""
    bounds = [rowids[0]]
    last = rowids[0]
    for rowid in rowids[1:]:
        if rowid != last + 1:
            bounds += (last, rowid)
        last = rowid
    bounds.append(last)
    return bounds


_FIRST, _SECOND, _THIRD = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


@functools.lru_cache(maxsize=16)
def _ack_statement(runs: int) -> str:
    return _ACK_LEASED.format(runs=" OR ".join(["rowid BETWEEN ? AND ?"] * runs))
# (``expires <= ?2`` as well: whatever ``expired`` holds, no live row is ever deleted here.)
_DROP_LEASED = (
    "DELETE FROM entries WHERE (scope, key) IN (SELECT scope, key FROM expired WHERE rowid >= ?1) "
    "AND expires <= ?2"
)
#: The sweeper's checkpoint (:meth:`KvFileStore._checkpoint`) and how often it runs at most: at
#: 10,000 expiries a second and a get/set load the WAL grows a few hundred pages in that time.
_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
_CHECKPOINT_EVERY_S = 0.1
#: WAL pages after which a commit of the store's own connection checkpoints: SQLite's default,
#: and while the sweeper checkpoints, a bound it reaches only when the sweeper falls behind (its
#: polls are 0.25 s apart when few entries expire, and a busy application writes more than 1,000
#: pages in that time; 4,000 pages: a WAL of 16 MB at most).
_AUTOCHECKPOINT = 1000
_AUTOCHECKPOINT_SWEPT = 4000
_SWEEP_INDEX = "CREATE INDEX IF NOT EXISTS entries_by_sweep ON entries (sweep_at) WHERE sweep_at IS NOT NULL"
# Args (scope, key, value, expires); a new row's sweep_at is its deadline. ``_UPSERT`` keeps the
# row's sweep_at (correct only while it is set and not after the new deadline, or there is no
# deadline: see ``_upsert``); ``_UPSERT_SWEEP`` sets it to the deadline (an index update).
_UPSERT = (
    "INSERT INTO entries (scope, key, value, expires, sweep_at) VALUES (?1, ?2, ?3, ?4, ?4) "
    "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
)
_UPSERT_SWEEP = f"{_UPSERT}, sweep_at = excluded.sweep_at"
# A live row's new value and no deadline, as ``_UPSERT`` over it (args: value, scope, key).
_OVERWRITE = "UPDATE entries SET value = ?, expires = NULL WHERE scope = ? AND key = ?"
# ``write_if`` with the "missing" token: written only over no row or an expired one.
_CREATE = f"{_UPSERT_SWEEP} WHERE NOT {_LIVE.replace('expires', 'entries.expires')}"
_SWEEP_LATER = (
    "UPDATE entries SET sweep_at = expires WHERE (scope, key) IN "
    "(SELECT scope, key FROM entries WHERE sweep_at <= ? AND (expires IS NULL OR expires > ?) LIMIT ?)"
)
# Scopes and keys are stored as UTF-8 BLOBs: byte order is code point order, and no text
# function of SQLite ever sees a NUL or other odd character.
_SKIP_SCAN_SCOPES = """
WITH RECURSIVE s(scope) AS (
    SELECT MIN(scope) FROM entries
    UNION ALL
    SELECT (SELECT MIN(scope) FROM entries WHERE scope > s.scope) FROM s WHERE s.scope IS NOT NULL
)
SELECT scope FROM s WHERE scope IS NOT NULL
  AND EXISTS (SELECT 1 FROM entries e WHERE e.scope = s.scope AND (e.expires IS NULL OR e.expires > ?))
"""


#: Primitives that only read (a round of them needs no write lock, and no savepoint per call).
_READS = frozenset({"read", "read_versioned"})

#: Keys per ``SELECT … key IN (…)`` of a batch round (well under SQLite's oldest variable limit, 999).
_IN_CHUNK = 500
_MARKS = ["", *(",".join("?" * n) for n in range(1, _IN_CHUNK + 1))]
#: Per number of keys: the live rows' ``key, value`` of one scope (args: scope, keys…, now). Keys
#: are bound as ``bytearray``: see ``_upsert_one_scope``.
_READ_LIVE = [
    f"SELECT key, value FROM entries WHERE scope = ? AND key IN ({marks}) AND {_LIVE}" for marks in _MARKS
]

#: Whether a scope holds any row (live or not) between two keys: import's probe before its lookups.
_ANY_BETWEEN = "SELECT 1 FROM entries WHERE scope = ? AND key BETWEEN ? AND ? LIMIT 1"
#: A new row without a deadline, from the names as text (SQLite makes their UTF-8 bytes: no
#: ``str.encode`` and no new tuple per row in Python).
_INSERT_NEW = "INSERT INTO entries (scope, key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB), ?)"


#: Options that only a file_based store uses.
_FILE_OPTIONS = ("file_path", "fsync", "busy_timeout_ms", "expiry_lease_ms")

#: ``read_joined``'s query (args: the keys as a JSON array, scope, now): the live values, each one
#: checked to be a whole JSON text, joined in the keys' order (``j.key`` is each key's place: the
#: places come back too, to check the order, which an aggregate does not promise).
_READ_JOINED = (
    "SELECT group_concat(j.key), min(e.value IS NULL OR json_valid(CAST(e.value AS TEXT))), "
    "'[' || group_concat(coalesce(CAST(e.value AS TEXT), 'null'), ',') || ']' "
    f"FROM json_each(?1) AS j LEFT JOIN entries AS e ON e.scope = ?2 AND e.key = CAST(j.value AS BLOB) "
    f"AND {_LIVE.replace('expires', 'e.expires').replace('?', '?3')}"
)
#: Per number of keys: the places ``read_joined``'s rows must come in, as ``group_concat`` spells them.
_PLACES: dict[int, str] = {}
#: The rows ``place, value, expires`` of one scope's keys (args: the keys as a JSON array, scope),
#: one per key, ``place`` its index in the array. No ``ORDER BY``: it made SQLite sort the rows in a
#: temporary b-tree, though ``json_each`` gives them in the array's order; ``_in_order`` checks that.
_ROWS_JOINED = (
    "SELECT j.key, e.value, e.expires FROM json_each(?1) AS j "
    "LEFT JOIN entries AS e ON e.scope = ?2 AND e.key = CAST(j.value AS BLOB)"
)
#: ``list(range(n))`` per number of rows: the places ``_ROWS_JOINED``'s rows come in.
_PLACES_IN_ORDER: dict[int, list[int]] = {}


def _in_order(rows: list[Any]) -> list[Any]:
    """``_ROWS_JOINED``'s rows in the keys' order: as they came (SQLite gives them so), or sorted by
    place when they did not (an aggregate or join order SQLite does not promise is never trusted)."""
    places = _PLACES_IN_ORDER.get(len(rows))
    if places is None:
        places = _PLACES_IN_ORDER[len(rows)] = list(range(len(rows)))
    if list(map(_FIRST, rows)) != places:
        rows.sort(key=_FIRST)
    return rows


#: Rows one multi-row upsert writes at most (two parameters each).
_UPSERT_ROWS = 250
#: Per number of rows and whether the values go in as text: one statement writing them all into
#: one scope with no deadline, as ``_UPSERT`` writes each (args: scope, then key and value of each
#: row). One statement for 100 rows took 0.6x the time of ``executemany`` of an ``UPDATE`` each.
_UPSERT_MANY: dict[tuple[int, bool], str] = {}


def store_method(config: Mapping[str, Any]) -> str:
    """The store method a config asks for.

    Omitted, it is ``file_based`` when ``file_path`` is given (as iii's ``state`` worker
    defaults to a file store: a path that is never used would lose every write at exit), else
    the engine's ``in_memory``.
    """
    method = config.get("store_method")
    if method is None:
        return "file_based" if "file_path" in config else "in_memory"
    return method if isinstance(method, str) else "in_memory"  # open() reports a bad type


def _same(data: bytes, _old: bytes | None) -> bytes:
    return data


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def _upsert(db: sqlite3.Connection, args: tuple[bytes, bytes, bytes, int | None], row: Any) -> None:
    """Write ``args`` (scope, key, value, expires) over ``row`` (its ``value, expires, sweep_at``,
    ``None`` when missing), touching the sweep index only when the row's ``sweep_at`` could
    come after the new deadline."""
    expires = args[3]
    lazy = expires is None or row is None or (row[2] is not None and row[2] <= expires)
    db.execute(_UPSERT if lazy else _UPSERT_SWEEP, args)


def _decoded(rows: list[Any]) -> list[Expired]:
    """``(scope, key, value, deadline)`` of ``(scope, key, value, expires)`` rows."""
    scopes: dict[bytes, str] = {}  # a batch mostly holds few scopes: decode each once
    taken: list[Expired] = []
    for s, k, v, e in rows:
        scope = scopes.get(s)
        if scope is None:
            scope = scopes[s] = bytes(s).decode("utf-8")
        taken.append((scope, bytes(k).decode("utf-8"), bytes(v), e))
    return taken


def _by_scope(entries: Sequence[tuple[str, str]]) -> dict[str, list[int]]:
    """The places of each scope's entries."""
    first = entries[0][0] if entries else ""
    for scope, _ in entries:
        if scope != first:
            break
    else:
        return {first: list(range(len(entries)))} if entries else {}
    places: dict[str, list[int]] = {}
    for i, (scope, _) in enumerate(entries):
        places.setdefault(scope, []).append(i)
    return places


def _json_array(keys: Sequence[str]) -> str | None:
    """``json.dumps(keys)`` when every key is printable ASCII (a JSON string carries it into SQLite
    unchanged: ``json_each`` gives back the same text), else ``None``. Printable ASCII takes an
    escape only for a quote or a backslash: without either the array is joined (a tenth of the time
    of ``json.dumps``)."""
    names = "".join(keys)
    if not (names.isascii() and names.isprintable()):
        return None
    return json.dumps(keys) if '"' in names or "\\" in names else '["' + '","'.join(keys) + '"]'


def _upsert_one_scope(db: sqlite3.Connection, scope: str, keys: list[str], data: list[bytes]) -> None:
    """Write each ``keys[i]: data[i]`` (no deadline) into ``scope``, in a few statements.

    Everything goes in as text cast to a BLOB (the same UTF-8 bytes), or the values as ``bytearray``
    when one is not UTF-8: the sqlite3 module binds ``str`` and ``bytearray`` as they are, but first
    asks its adapter registry about each ``bytes`` (a failed attribute look-up with its error message
    built and dropped: ~0.6 µs a parameter, more than a row's write). Text costs less than a
    ``bytearray``: no copy made and freed per value, and an ASCII ``str`` is bound from its own buffer.
    """
    for start in range(0, len(keys), _UPSERT_ROWS):
        part_data = data[start : start + _UPSERT_ROWS]
        try:
            values: list[Any] = list(map(bytes.decode, part_data))
            as_text = True
        except (UnicodeDecodeError, TypeError):  # not UTF-8 (or not bytes): bound as it is
            values, as_text = list(map(bytearray, part_data)), False
        part = zip(keys[start : start + _UPSERT_ROWS], values, strict=True)
        args = [scope, *itertools.chain.from_iterable(part)]
        rows = (len(args) - 1) // 2
        query = _UPSERT_MANY.get((rows, as_text))
        if query is None:
            value = "CAST(? AS BLOB)" if as_text else "?"
            query = _UPSERT_MANY[rows, as_text] = (
                "INSERT INTO entries (scope, key, value, expires, sweep_at) VALUES "
                + ",".join([f"(CAST(?1 AS BLOB), CAST(? AS BLOB), {value}, NULL, NULL)"] * rows)
                + " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires = NULL"
            )
        db.execute(query, args)


class KvFileStore(Adapter):
    """The ``kv`` adapter. ``open()`` returns an in-memory store for ``store_method: in_memory``."""

    name = "kv"
    distribution = "iii-state-kvfile"
    capabilities = Capabilities(
        durable=True,
        shared=True,
        atomic_update="native",
        ordered_listing=True,
        listing_cost="list_entries O(log n + page); list_groups O(scopes · log n) by index skip-scan",
        ttl="emulated",
        expiry_event_delay_ms=500,
        transactions=True,
    )

    path_options = ("file_path",)
    state_options = ("save_interval_ms", "expiry_events")

    @classmethod
    def missing_store(cls, config: Mapping[str, Any]) -> str | None:
        if store_method(config) != "file_based":
            return "an in_memory store starts empty in every process"
        directory = config.get("file_path", "kv_store_data")
        if not isinstance(directory, str):
            return None  # open() reports the bad option
        database = os.path.abspath(os.path.join(directory, DB_FILE))
        return None if os.path.isfile(database) else f"{database} does not exist"

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        opts = Options("adapter 'kv'", config)
        method = opts.str("store_method", store_method(config), choices=("in_memory", "file_based"))
        file_path = opts.str("file_path", "kv_store_data")
        # Accepted for engine parity; every write here is committed before it returns, so
        # there is no save loop for this cadence to drive.
        opts.int("save_interval_ms", None, minimum=0)
        # From the state block: the core sweeps (and emits events); this store must neither
        # delete expired rows itself nor let a write replace one before the sweeper takes it.
        expiry_events = opts.bool("expiry_events", False)
        expiry_lease_ms = opts.int("expiry_lease_ms", EXPIRY_LEASE_MS, minimum=1)
        fsync = opts.bool("fsync", False)
        busy_timeout_ms = opts.int("busy_timeout_ms", 30_000, minimum=0)
        opts.finish()
        if method == "in_memory":
            ignored = [name for name in _FILE_OPTIONS if name in config]
            if ignored:
                raise ConfigError(
                    f"adapter 'kv' config: {', '.join(ignored)} would be ignored by store_method: "
                    f"in_memory (nothing is written to disk); remove it, or set store_method: file_based"
                )
            return KvMemoryStore()
        return cls(
            file_path,
            fsync=fsync,
            busy_timeout_ms=busy_timeout_ms,
            expiry_events=expiry_events,
            expiry_lease_ms=expiry_lease_ms,
        )

    def __init__(
        self,
        directory: str,
        *,
        fsync: bool = False,
        busy_timeout_ms: int = 30_000,
        expiry_events: bool = False,
        expiry_lease_ms: int = EXPIRY_LEASE_MS,
    ) -> None:
        self._keep_expired = expiry_events
        self._lease_ms = expiry_lease_ms
        self.path = os.path.abspath(os.path.join(directory, DB_FILE))
        try:
            os.makedirs(directory, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so every write takes the
            # write lock before it reads, and read-modify-write cannot interleave across processes.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
            self._lock = threading.Lock()
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._prepare(fsync, busy_timeout_ms / 1000)
        except (OSError, sqlite3.Error) as exc:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise BackendError(
                f"cannot open the kv file store {self.path}: {detail}", code="OPEN_ERROR"
            ) from None
        self._next_sweep = 0.0
        #: scope -> ((data_version, total_changes), valid before this clock, live rows)
        self._counts: dict[bytes, tuple[tuple[int, int], int, int]] = {}
        #: per lease end, the entries ``take_expired`` leased and their ``expired`` rowids (for
        #: ``ack_expired``; a sweeper has one claim at a time, so mostly one)
        self._claims: dict[int, dict[Expired, int]] = {}
        self._leases_lock = threading.Lock()
        #: The sweeper's own connection, only for checkpoints (see :meth:`_checkpoint`), opened at
        #: its first one; none after closing or once a checkpoint failed (``_checkpoints_off``).
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoints_off = False
        self._checkpoint_lock = threading.Lock()
        self._next_checkpoint = 0.0

    def _prepare(self, fsync: bool, patience: float) -> None:
        """Switch to WAL and create the table, waiting out other processes doing the same.

        Switching the journal mode can report "database is locked" at once, without SQLite's
        busy handler, while another process opens or recovers the same file; retry it.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                self._init_schema(fsync)
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _init_schema(self, fsync: bool) -> None:
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a commit is in the WAL (in the OS) before it returns, which survives a killed
        # process; FULL adds an fsync per commit so it also survives power loss.
        self._db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(entries)")}
        if "expires" not in columns:  # a store written before entries could expire
            try:
                self._db.execute("ALTER TABLE entries ADD COLUMN expires INTEGER")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first
                    raise
        if "sweep_at" not in columns:  # a store whose sweep read an index of the deadlines
            self._add_sweep_at()
        self._db.execute(_SWEEP_INDEX)
        self._db.execute("DROP INDEX IF EXISTS entries_by_expiry")  # replaced by entries_by_sweep
        self._db.execute(_KEPT_SCHEMA)
        if "leased_until" not in {row[1] for row in self._db.execute("PRAGMA table_info(expired)")}:
            try:  # a store written before claims were leases
                self._db.execute("ALTER TABLE expired ADD COLUMN leased_until INTEGER")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first
                    raise

    def _add_sweep_at(self) -> None:
        """Add the column and fill it in one transaction: no row with a deadline is left unswept."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if "sweep_at" not in {row[1] for row in self._db.execute("PRAGMA table_info(entries)")}:
                self._db.execute("ALTER TABLE entries ADD COLUMN sweep_at INTEGER")
                self._db.execute("UPDATE entries SET sweep_at = expires WHERE expires IS NOT NULL")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def describe(self) -> str:
        return f"kv (file_based at {self.path})"

    @contextmanager
    def _write_txn(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute(begin)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _select(self, db: sqlite3.Connection, scope: str, key: str, now: int | None = None) -> bytes | None:
        row = db.execute(
            f"SELECT value FROM entries WHERE scope = ? AND key = ? AND {_LIVE}",
            (_b(scope), _b(key), now_ms() if now is None else now),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _select_live(
        self, db: sqlite3.Connection, scope: str, key: str, now: int | None = None
    ) -> tuple[bytes, int | None] | None:
        row = db.execute(
            f"SELECT value, expires FROM entries WHERE scope = ? AND key = ? AND {_LIVE}",
            (_b(scope), _b(key), now_ms() if now is None else now),
        ).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def read(self, scope: str, key: str) -> bytes | None:
        with self._lock:
            return self._select(self._db, scope, key)

    def write(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        self._sweep_now_and_then()
        with self._write_txn() as db:
            return self._write_in(db, scope, key, data, expires_at)

    def _write_in(
        self, db: sqlite3.Connection, scope: str, key: str, data: bytes, expires_at: int | None = None
    ) -> bytes | None:
        # one look-up both reads the old value and finds an expired row to keep (no _keep query)
        s, k, now = _b(scope), _b(key), now_ms()
        row = db.execute(
            "SELECT value, expires, sweep_at FROM entries WHERE scope = ? AND key = ?", (s, k)
        ).fetchone()
        old = None
        if row is not None:
            if row[1] is None or row[1] > now:
                old = bytes(row[0])
            elif self._keep_expired:
                db.execute(_KEEP_ROW, (s, k, row[0], row[1]))
        _upsert(db, (s, k, data, expires_at), row)
        return old

    def _keep(self, db: sqlite3.Connection, scope: str, key: str) -> int:
        """Copy the entry to ``expired`` if it is past its deadline (inside a write transaction,
        before the write replaces or deletes it). :returns: the "now" to judge it by afterwards."""
        now = now_ms()
        if self._keep_expired:
            db.execute(_KEEP_EXPIRED, (_b(scope), _b(key), now))
        return now

    def remove(self, scope: str, key: str) -> bytes | None:
        if self._keep_expired:
            with self._write_txn() as db:
                return self._remove_in(db, scope, key)
        with self._lock:  # one statement: no transaction of its own needed
            return self._remove_in(self._db, scope, key)

    def _remove_in(self, db: sqlite3.Connection, scope: str, key: str) -> bytes | None:
        now = self._keep(db, scope, key)
        row = db.execute(
            "DELETE FROM entries WHERE scope = ? AND key = ? RETURNING value, expires", (_b(scope), _b(key))
        ).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None  # an expired entry was already missing
        return bytes(row[0])

    def write_if(self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP) -> bool:
        if token is None and self._keep_expired:  # the upsert may replace an expired row: keep it first
            with self._write_txn() as db:
                now = self._keep(db, scope, key)
                return self._write_if(db, scope, key, data, token, expires_at, now)
        with self._lock:
            return self._write_if(self._db, scope, key, data, token, expires_at, now_ms())

    def _write_if_in(
        self,
        db: sqlite3.Connection,
        scope: str,
        key: str,
        data: bytes,
        token: Token,
        expires_at: ExpiresAt = KEEP,
    ) -> bool:
        now = self._keep(db, scope, key) if token is None else now_ms()
        return self._write_if(db, scope, key, data, token, expires_at, now)

    def _write_if(
        self, db: sqlite3.Connection, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt,
        now: int,
    ) -> bool:
        if token is None:  # only if missing or expired; a missing entry has no deadline to keep
            cur = db.execute(
                _CREATE, (_b(scope), _b(key), data, resolve_expiry(expires_at, None), now)
            )
        elif expires_at is KEEP:
            cur = db.execute(
                f"UPDATE entries SET value = ? WHERE scope = ? AND key = ? AND value = ? AND {_LIVE}",
                (data, _b(scope), _b(key), token, now),
            )
        else:
            cur = db.execute(
                "UPDATE entries SET value = ?1, expires = ?2, sweep_at = coalesce(?2, sweep_at) "
                "WHERE scope = ?3 AND key = ?4 AND value = ?5 AND (expires IS NULL OR expires > ?6)",
                (data, expires_at, _b(scope), _b(key), token, now),
            )
        return cur.rowcount == 1

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes], expires_at: ExpiresAt = KEEP
    ) -> tuple[bytes | None, bytes]:
        self._sweep_now_and_then()
        with self._write_txn() as db:
            return self._modify_in(db, scope, key, change, expires_at)

    def _modify_in(
        self,
        db: sqlite3.Connection,
        scope: str,
        key: str,
        change: Callable[[bytes | None], bytes],
        expires_at: ExpiresAt = KEEP,
    ) -> tuple[bytes | None, bytes]:
        now = self._keep(db, scope, key)
        s, k = _b(scope), _b(key)
        row = db.execute(
            "SELECT value, expires, sweep_at FROM entries WHERE scope = ? AND key = ?", (s, k)
        ).fetchone()
        live = row is not None and (row[1] is None or row[1] > now)
        old, deadline = (bytes(row[0]), row[1]) if live else (None, None)
        new = change(old)
        _upsert(db, (s, k, new, resolve_expiry(expires_at, deadline)), row)
        return old, new

    def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        """``state::transact`` after the core's read: one transaction checks every token, then writes."""
        self._sweep_now_and_then()
        with self._write_txn() as db:
            found = self._select_many(db, [(scope, key) for scope, key, _ in checks], now_ms())
            if any(live != token for (_, _, token), (live, _) in zip(checks, found, strict=True)):
                return False
            expired = {(s, k): row for (s, k, _), (_, row) in zip(checks, found, strict=True)}
            self._apply_in(db, writes, expired)
            return True

    def modify_many(
        self,
        entries: Sequence[tuple[str, str]],
        change: Callable[[list[bytes | None]], Sequence[PlannedWrite] | None],
    ) -> bool:
        """``state::transact`` in one SQLite transaction: read every entry, compute, write."""
        self._sweep_now_and_then()
        entries = list(entries)
        if not self._keep_expired:  # only the live values matter (one C-built dict)
            with self._lock:  # _write_txn written out: this is the whole of a transaction's store work
                db = self._db
                db.execute("BEGIN IMMEDIATE")
                try:
                    live = self._read_many(db, entries, now_ms())
                    writes = change(live)
                    if writes:
                        self._write_over_in(db, writes, dict(zip(entries, live, strict=True)))
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            return True
        with self._write_txn() as db:
            found = self._select_many(db, entries, now_ms())
            live = [value for value, _ in found]
            expired = {entry: row for entry, (_, row) in zip(entries, found, strict=True)}
            writes = change(live)
            if writes:
                self._apply_in(db, writes, expired)
            return True

    def _write_over_in(
        self,
        db: sqlite3.Connection,
        writes: Sequence[PlannedWrite],
        live: dict[tuple[str, str], bytes | None],
    ) -> None:
        """:meth:`_apply_in` without expired rows to keep, knowing each entry's live value: plain
        sets of live entries are one ``UPDATE`` each (one b-tree seek, not an upsert's two)."""
        if not all(data is not None and when is None and (s, k) in live for s, k, data, when in writes):
            self._apply_in(db, writes, dict.fromkeys(live))
            return
        updates = [(data, s.encode(), k.encode()) for s, k, data, _ in writes if live[(s, k)] is not None]
        if updates:
            db.executemany(_OVERWRITE, updates)
        if len(updates) < len(writes):  # missing (or expired) entries
            rows = [(s.encode(), k.encode(), data, None) for s, k, data, _ in writes if live[(s, k)] is None]
            db.executemany(_UPSERT, rows)

    def _apply_in(
        self,
        db: sqlite3.Connection,
        writes: Sequence[PlannedWrite],
        expired: dict[tuple[str, str], tuple[bytes, int] | None],
    ) -> None:
        """The writes of a transaction over entries just read in it (``expired``: each one's row
        when past its deadline, else ``None``)."""
        if all(data is not None and when is None and (s, k) in expired for s, k, data, when in writes):
            # only plain sets of entries just read: their rows are known, write them at once
            if self._keep_expired:  # expired rows the writes replace, for take_expired
                rows = [(s, k, expired[(s, k)]) for s, k, _, _ in writes]
                db.executemany(_KEEP_ROW, [(_b(s), _b(k), *row) for s, k, row in rows if row is not None])
            db.executemany(_UPSERT, [(s.encode(), k.encode(), data, None) for s, k, data, _ in writes])
            return
        for scope, key, data, expires_at in writes:
            if data is None:
                self._remove_in(db, scope, key)
            elif expires_at is KEEP:
                self._modify_in(db, scope, key, functools.partial(_same, data))
            else:
                self._write_in(db, scope, key, data, cast("int | None", expires_at))

    # -- state::batch: a round of calls in one transaction, one commit -------------------------
    def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Every call inside one SQLite transaction (one commit, one fsync with ``fsync: true``).

        A call that fails is undone alone (its one statement, or its savepoint when it also keeps an
        expired row); the others commit. When the commit itself fails nothing is applied and every
        call reports that error.
        """
        names = set(map(_FIRST, calls))
        if names == {"read"} and len(calls) <= _IN_CHUNK and len({call[1][0] for call in calls}) == 1:
            try:  # one SELECT: its own consistent read, no BEGIN and COMMIT around it
                with self._lock:
                    return self._read_many(self._db, [call[1] for call in calls], now_ms())
            except sqlite3.Error:
                pass  # each call alone below, so that only a failing one reports it
        writes = not names <= _READS | {"read_expiry"}
        if writes:
            self._sweep_now_and_then()
        out: list[Any] = []
        try:
            with self._write_txn("BEGIN IMMEDIATE" if writes else "BEGIN") as db:
                bulk = self._bulk_in(db, calls)
                if bulk is not None:
                    return bulk
                for name, args in calls:
                    out.append(self._one_in(db, name, args))
        except sqlite3.Error as exc:
            return [exc] * len(calls)
        return out

    def _bulk_in(
        self, db: sqlite3.Connection, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any] | None:
        """A round of only reads, or only plain writes (no deadline) of distinct entries, in a few
        statements: one ``SELECT … key IN (…)`` per scope (and one ``executemany`` upsert for writes)
        instead of one or two statements per call. ``None``: the round is not one of those, or a
        statement failed (undone; then each call runs alone, so only a failing one reports it).
        """
        names = set(map(_FIRST, calls))
        if names <= _READS:  # a read's args are (scope, key)
            try:
                if names == {"read"}:  # a read-only transaction: no savepoint needed to undo
                    return self._read_many(db, [args for _, args in calls], now_ms())
                found = self._select_many(db, [args for _, args in calls], now_ms())
            except sqlite3.Error:
                return None
            answers = zip(calls, found, strict=True)
            return [raw if name == "read" else (raw, raw) for (name, _), (raw, _) in answers]
        if names == {"write_if"}:
            return self._create_many_in(db, calls)
        if names != {"write"}:
            return None
        written = self._write_one_scope_in(db, calls)
        if written is not None:
            return written
        if any(len(args) != 3 for _, args in calls):
            return None
        entries = [args[:2] for _, args in calls]
        if len(set(entries)) != len(entries):
            return None  # an entry written twice: in order, one by one
        db.execute("SAVEPOINT bulk")
        try:
            now = now_ms()
            found = self._select_many(db, entries, now)
            if self._keep_expired:
                pairs = zip(entries, found, strict=True)
                expired = [(_b(s), _b(k), *row) for (s, k), (_, row) in pairs if row is not None]
                if expired:
                    db.executemany(_KEEP_ROW, expired)
            scope = entries[0][0]
            if all(s == scope for s, _ in entries):
                _upsert_one_scope(db, scope, [k for _, k in entries], [args[2] for _, args in calls])
                return [raw for raw, _ in found]
            # a row found (live or expired) takes an UPDATE: one b-tree seek, not an upsert's two
            # (0.63x the time for 100 rows); the rest are inserted
            pairs = zip(calls, found, strict=True)
            held = [(args, v is not None or row is not None) for (_, args), (v, row) in pairs]
            there = [(a[2], a[0].encode(), a[1].encode()) for a, h in held if h]
            if there:
                db.executemany(_OVERWRITE, there)
            if len(there) < len(calls):
                missing = [(a[0].encode(), a[1].encode(), a[2], None) for a, h in held if not h]
                db.executemany(_UPSERT, missing)
        except sqlite3.Error:
            db.execute("ROLLBACK TO bulk")
            return None
        finally:
            db.execute("RELEASE bulk")
        return [raw for raw, _ in found]

    def _write_one_scope_in(
        self, db: sqlite3.Connection, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any] | None:
        """:meth:`_bulk_in`'s usual round of writes: plain writes of distinct printable ASCII keys of
        one scope whose rows hold no deadline, checked and unpacked by C iteration (a Python step
        per write cost a tenth of the round). ``None`` when the round is not that (nothing done)."""
        args = list(map(_SECOND, calls))
        if set(map(len, args)) != {3}:
            return None
        scopes, keys = list(map(_FIRST, args)), list(map(_SECOND, args))
        scope = scopes[0]
        array = _json_array(keys)
        if array is None or scopes.count(scope) != len(scopes) or len(set(keys)) != len(keys):
            return None
        db.execute("SAVEPOINT bulk")
        try:
            rows = _in_order(db.execute(_ROWS_JOINED, (array, _b(scope))).fetchall())
            if set(map(_THIRD, rows)) != {None} or len(rows) != len(keys):
                return None  # a row with a deadline (maybe past it): _bulk_in's own way
            _upsert_one_scope(db, scope, keys, list(map(_THIRD, args)))
        except sqlite3.Error:
            db.execute("ROLLBACK TO bulk")
            return None
        finally:
            db.execute("RELEASE bulk")
        return list(map(_SECOND, rows))

    def _create_many_in(
        self, db: sqlite3.Connection, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any] | None:
        """A round of ``write_if`` "only if missing" (token ``None``, as import writes) of distinct
        entries: one ``executemany``. It answers only when every row was written (the usual case:
        new keys); otherwise it is undone and each call runs alone, to say which one was not."""
        if any(args[3] is not None or (len(args) > 4 and args[4] is KEEP) for _, args in calls):
            return None
        now = now_ms()
        rows = [(a[0].encode(), a[1].encode(), a[2], a[4] if len(a) > 4 else None, now) for _, a in calls]
        if len({row[:2] for row in rows}) != len(rows):
            return None
        db.execute("SAVEPOINT bulk")
        try:
            if self._keep_expired:  # the upsert may replace expired rows: keep them first
                db.executemany(_KEEP_EXPIRED, [(s, k, now) for s, k, *_ in rows])
            written = db.executemany(_CREATE, rows).rowcount
            if written != len(rows):
                db.execute("ROLLBACK TO bulk")
                return None
        except sqlite3.Error:
            db.execute("ROLLBACK TO bulk")
            return None
        finally:
            db.execute("RELEASE bulk")
        return [True] * len(rows)

    def _read_many(self, db: sqlite3.Connection, entries: list[tuple[str, str]], now: int) -> list[Any]:
        """Per entry its live value or ``None``: :meth:`_select_many` without the expired rows
        (filtered by the query, so the rows come back as a dict built in C)."""
        by_scope = _by_scope(entries)
        if len(by_scope) == 1 and len(entries) <= _IN_CHUNK:  # one scope: one query, no places
            names = [key.encode("utf-8") for _, key in entries]
            s = entries[0][0].encode("utf-8")
            found = dict(db.execute(_READ_LIVE[len(names)], (s, *map(bytearray, names), now)))
            return list(map(found.get, names))
        out: list[Any] = [None] * len(entries)
        for scope, places in by_scope.items():
            s = scope.encode("utf-8")
            for start in range(0, len(places), _IN_CHUNK):
                part = places[start : start + _IN_CHUNK]
                names = [entries[i][1].encode("utf-8") for i in part]
                found = dict(db.execute(_READ_LIVE[len(names)], (s, *map(bytearray, names), now)))
                for i, name in zip(part, names, strict=True):
                    out[i] = found.get(name)
        return out

    def read_joined(self, scope: str, keys: Sequence[str]) -> str | None:
        """One query: the keys go in as one JSON array (``json_each``: no bound parameter per key,
        half the time of ``key IN (?, …)``) and the values come out as one text, each checked by
        SQLite to be a whole JSON text. ``None`` for keys a JSON string could change (not printable
        ASCII), a value that is not valid JSON or UTF-8, or rows out of order."""
        array = _json_array(keys)
        if not keys or array is None:
            return None
        places = _PLACES.get(len(keys))
        if places is None:
            places = _PLACES[len(keys)] = ",".join(map(str, range(len(keys))))
        try:
            with self._lock:
                order, valid, text = self._db.execute(
                    _READ_JOINED, (array, scope.encode("utf-8"), now_ms())
                ).fetchone()
        except (sqlite3.Error, ValueError):  # a value that is not UTF-8 cannot come out as text
            return None
        return text if order == places and valid == 1 else None

    def _select_many(
        self, db: sqlite3.Connection, entries: list[tuple[str, str]], now: int
    ) -> list[tuple[bytes | None, tuple[bytes, int] | None]]:
        """Per entry: its live value (or ``None``) and, when its row is past its deadline, that row
        ``(value, expires)``. One query per scope and :data:`_IN_CHUNK` keys."""
        by_scope = _by_scope(entries)
        array = _json_array([key for _, key in entries]) if len(by_scope) == 1 else None
        if array is not None:  # one query, rows in order
            joined = _in_order(db.execute(_ROWS_JOINED, (array, _b(entries[0][0]))).fetchall())
            return [
                (None, None) if value is None else (value, None) if expires is None or expires > now
                else (None, (value, expires))
                for _, value, expires in joined
            ]  # fmt: skip
        out: list[tuple[bytes | None, tuple[bytes, int] | None]] = [(None, None)] * len(entries)
        for scope, places in by_scope.items():
            s = _b(scope)
            for start in range(0, len(places), _IN_CHUNK):
                part = places[start : start + _IN_CHUNK]
                names = [_b(entries[i][1]) for i in part]
                marks = _MARKS[len(names)]
                query = f"SELECT key, value, expires FROM entries WHERE scope = ? AND key IN ({marks})"
                found = db.execute(query, (s, *map(bytearray, names)))
                rows = {key: (value, expires) for key, value, expires in found}
                for i, name in zip(part, names, strict=True):
                    row = rows.get(name)
                    if row is not None:
                        out[i] = (row[0], None) if row[1] is None or row[1] > now else (None, row)
        return out

    def _one_in(self, db: sqlite3.Connection, name: str, args: tuple[Any, ...]) -> Any:
        if name in _READS:
            try:
                raw = self._select(db, *args)
            except Exception as exc:
                return exc
            return raw if name == "read" else (raw, raw)
        inner = getattr(self, f"_{name}_in", None)
        if inner is None:
            return NotImplementedError(f"the kv file store cannot batch {name!r}")
        if not self._keep_expired:  # one writing statement per call: SQLite undoes a failed one alone
            try:
                return inner(db, *args)
            except Exception as exc:
                return exc
        db.execute("SAVEPOINT one_call")  # keeping an expired row first: two writing statements
        try:
            result = inner(db, *args)
        except Exception as exc:
            db.execute("ROLLBACK TO one_call")
            result = exc
        db.execute("RELEASE one_call")
        return result

    def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        with self._lock:
            return self._read_expiry_in(self._db, scope, key)

    def _read_expiry_in(self, db: sqlite3.Connection, scope: str, key: str) -> tuple[bool, int | None]:
        live = self._select_live(db, scope, key)
        return (False, None) if live is None else (True, live[1])

    def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        with self._lock:
            return self._set_expiry_in(self._db, scope, key, expires_at)

    def _set_expiry_in(self, db: sqlite3.Connection, scope: str, key: str, expires_at: int | None) -> bool:
        cur = db.execute(
            "UPDATE entries SET expires = ?1, sweep_at = coalesce(?1, sweep_at) "
            "WHERE scope = ?2 AND key = ?3 AND (expires IS NULL OR expires > ?4)",
            (expires_at, _b(scope), _b(key), now_ms()),
        )
        return cur.rowcount == 1

    def take_expired(self, limit: int = 1000) -> list[Expired]:
        """Claim up to ``limit`` rows past their deadline and return them (scope, key, value, deadline).

        They were already invisible; the claim is one transaction, so across processes each
        expired row is claimed once. With expiry events it is a lease (decision 0016): the rows
        move to ``expired`` leased for ``expiry_lease_ms``, :meth:`ack_expired` deletes them, and
        a lease that ended unacknowledged (its sweeper was killed) is claimed again. Without
        expiry events (the writes' own clean-up) they are deleted.
        """
        if self._keep_expired:
            self._checkpoint()
        now = now_ms()
        with self._lock:
            # a read first: polling an empty sweep must not take the write lock every time
            if self._db.execute(_ANY_EXPIRED, (now,)).fetchone() is None:
                return []
        if not self._keep_expired:
            with self._write_txn() as db:
                due = db.execute(_TAKE_DUE, (now, now, limit)).fetchall()
                if len(due) < limit:
                    db.execute(_SWEEP_LATER, (now, now, limit))
            return _decoded(due)
        until = now + self._lease_ms
        with self._write_txn() as db:
            kept = db.execute(_LEASE_KEPT, (until, now, limit)).fetchall()
            taken: list[Expired] = [row[1:] for row in kept]
            rowids: Sequence[int] = [row[0] for row in kept]
            if len(taken) < limit:
                due, due_rowids = self._lease_due(db, until, now, limit - len(taken))
                if due:
                    first = due_rowids.start if isinstance(due_rowids, range) else min(due_rowids)
                    db.execute(_DROP_LEASED, (first, now))
                    if taken:
                        taken += due
                        rowids = [*rowids, *due_rowids]
                    else:  # the usual claim: no row a write kept
                        taken, rowids = due, due_rowids
                if len(taken) < limit:
                    db.execute(_SWEEP_LATER, (now, now, limit))
        # recorded after the transaction: the store's lock is not held for it
        with self._leases_lock:
            for lapsed in [end for end in self._claims if end <= now]:  # acknowledging failed
                del self._claims[lapsed]
            claim = self._claims.get(until)
            if claim is None:
                self._claims[until] = dict(zip(taken, rowids, strict=True))
            else:
                claim.update(zip(taken, rowids, strict=True))
        return taken

    @staticmethod
    def _lease_due(
        db: sqlite3.Connection, until: int, now: int, limit: int
    ) -> tuple[list[Any], Sequence[int]]:
        """Copy up to ``limit`` due rows into ``expired`` leased until ``until``; :returns: the
        copies as ``Expired`` tuples in claim order, and their rowids in the same order."""
        largest = db.execute(_LARGEST_EXPIRED).fetchone()[0] or 0
        if largest > _LARGEST_ROWID - limit:  # new rowids may come at random
            rows = db.execute(_LEASE_DUE_RETURNING, (until, now, limit)).fetchall()
            return [row[1:] for row in rows], [row[0] for row in rows]
        if db.execute(_LEASE_DUE, (until, now, limit)).rowcount == 0:
            return [], []
        copies = db.execute(_COPIES_AFTER, (largest,)).fetchall()
        return copies, range(largest + 1, largest + 1 + len(copies))

    def ack_expired(self, taken: Sequence[Expired]) -> None:
        """Delete the leased rows of delivered entries (only while still leased by this claim).

        One statement per claim (lease end) and 200 runs of consecutive rowids, a sweeper's chunk
        being one: it runs on its own, without ``BEGIN``/``COMMIT`` around it, and SQLite steps it
        once (an ``executemany`` steps once per row, giving the GIL away and taking it back each
        time).
        """
        deletes = []
        with self._leases_lock:  # per claim (lease end), the rowids of the entries it holds
            claims = list(self._claims.items())
            held = [(until, list(map(claim.get, taken))) for until, claim in claims]
        for until, found in held:
            if None in found:  # entries of another claim (or of none)
                found = [rowid for rowid in found if rowid is not None]
                if not found:
                    continue
            rowids = sorted(set(cast("list[int]", found)))
            if rowids[-1] - rowids[0] == len(rowids) - 1:  # one run: a sweeper's usual chunk
                bounds = [rowids[0], rowids[-1]]
            else:
                bounds = _runs(rowids)
            for at in range(0, len(bounds), 2 * _ACK_RUNS):
                part = bounds[at : at + 2 * _ACK_RUNS]
                deletes.append((_ack_statement(len(part) // 2), (until, *part)))
        if len(deletes) == 1:
            with self._lock:  # one statement: a transaction of its own
                self._db.execute(*deletes[0])
        elif deletes:
            with self._write_txn() as db:
                for delete in deletes:
                    db.execute(*delete)
        with self._leases_lock:
            for until, claim in claims:
                collections.deque(map(claim.pop, taken, itertools.repeat(None)), 0)
                if not claim:
                    self._claims.pop(until, None)

    def _sweep_now_and_then(self) -> None:
        """Delete expired rows at most once a second, so they do not pile up in the file."""
        if self._keep_expired:
            return  # the core's sweeper takes them, with their events
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self.take_expired()

    def list_scopes(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(_SKIP_SCAN_SCOPES, (now_ms(),)).fetchall()
        return [bytes(r[0]).decode("utf-8") for r in rows]

    def count(self, scope: str) -> int | None:
        """The scope's live rows. A count is kept and answered again while the file is unchanged
        (no commit by another connection: ``PRAGMA data_version``; no row changed by this one:
        ``total_changes``) and no row can have expired since (the clock is still before the
        earliest ``sweep_at``, and a row expires no earlier than its ``sweep_at``)."""
        now = now_ms()
        s = _b(scope)
        with self._lock:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
            stamp = (version, self._db.total_changes)
            kept = self._counts.get(s)
            if kept is not None and kept[0] == stamp and now < kept[1]:
                return kept[2]
            # A row that is not live has ``sweep_at <= expires <= now``: while the sweep index
            # holds no such row, every row is live and COUNT need not read each row's ``expires``.
            (first_due,) = self._db.execute(_FIRST_DUE).fetchone()
            if first_due is not None and first_due <= now:
                (n,) = self._db.execute(_COUNT_LIVE, (s, now)).fetchone()
                return int(n)
            (n,) = self._db.execute(_COUNT_ALL, (s,)).fetchone()
            if len(self._counts) >= _COUNTS_KEPT:
                self._counts.pop(next(iter(self._counts)))
            self._counts[s] = (stamp, _NEVER if first_due is None else first_due, int(n))
        return int(n)

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        after = b"" if cursor is None else cursors.decode(cursor)
        op = ">=" if cursor is None else ">"
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, value FROM entries WHERE scope = ? AND key {op} ? AND {_LIVE} "
                "ORDER BY key LIMIT ?",
                (_b(scope), after, now_ms(), limit),
            ).fetchall()
        page = [(bytes(k).decode("utf-8"), bytes(v)) for k, v in rows]
        more = len(rows) == limit
        return page, (cursors.encode(bytes(rows[-1][0])) if more and rows else None)

    # -- import in big rounds ---------------------------------------------------------------
    def read_present(self, scope: str, keys: Sequence[str]) -> dict[str, bytes]:
        """One probe of the keys' range first: a new scope, or new keys past the stored ones, need
        no lookup per key (``SELECT … IN`` only when some row lies in that range)."""
        if not keys:
            return {}
        s = scope.encode("utf-8")
        # code point order is UTF-8 byte order (the core checked the keys are valid Unicode)
        lowest, highest = min(keys).encode("utf-8"), max(keys).encode("utf-8")
        found: dict[bytes, bytes] = {}
        with self._lock:
            if self._db.execute(_ANY_BETWEEN, (s, lowest, highest)).fetchone() is None:
                return {}
            names = [key.encode("utf-8") for key in keys]
            now = now_ms()
            for start in range(0, len(names), _IN_CHUNK):
                part = names[start : start + _IN_CHUNK]
                found.update(self._db.execute(_READ_LIVE[len(part)], (s, *map(bytearray, part), now)))
        return {bytes(key).decode("utf-8"): bytes(value) for key, value in found.items()}

    def create_missing(self, rows: Sequence[tuple[str, str, bytes]]) -> bool:
        """One transaction, one ``executemany`` of plain inserts: a key that has a row (live, or
        expired and not swept yet) or comes twice breaks the primary key and undoes them all."""
        if not rows:
            return True
        self._sweep_now_and_then()
        try:
            # each value as a bytearray (see _upsert_one_scope), by C iteration
            values = map(bytearray, map(_THIRD, rows))
            with self._write_txn() as db:
                db.executemany(_INSERT_NEW, zip(map(_FIRST, rows), map(_SECOND, rows), values, strict=True))
        except sqlite3.IntegrityError:
            return False
        return True

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file on a connection of the sweeper's own, at most every
        :data:`_CHECKPOINT_EVERY_S`, so the application's commits rarely reach SQLite's
        autocheckpoint (1,000 pages; whichever commit crosses it copies them, its caller waiting,
        and the sweeper's claims and acknowledgements bring it sooner). ``PASSIVE`` waits for
        nobody and leaves alone what a reader still sees; the connection is not the store's, so
        neither ``self._lock`` nor (inside SQLite) the GIL is held while it copies: the
        application's reads and writes go on beside it."""
        now = time.monotonic()
        if now < self._next_checkpoint or self._checkpoints_off:
            return
        self._next_checkpoint = now + _CHECKPOINT_EVERY_S
        with self._checkpoint_lock:
            if self._checkpoints_off:  # closed meanwhile
                return
            try:
                checkpointer = self._checkpointer
                if checkpointer is None:
                    checkpointer = self._checkpointer = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False, timeout=0
                    )
                    with self._lock:  # the application's commits copy the WAL only if this falls behind
                        self._db.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_SWEPT}")
                checkpointer.execute(_CHECKPOINT).fetchall()
            except sqlite3.Error as exc:
                if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                    return  # another process opening or recovering the file: next time
                log.debug("kv file store %s: the sweeper's checkpoints stop (%s)", self.path, exc)
                self._checkpoints_off = True
                if self._checkpointer is not None:
                    self._checkpointer.close()
                    self._checkpointer = None
                with self._lock:  # the application's commits copy the WAL again, as before
                    self._db.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")

    def close(self) -> None:
        with self._checkpoint_lock:
            self._checkpoints_off = True
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self._lock:
            self._db.close()
