"""Connections to the memcached servers, which server owns which key, and confirmed commands.

pymemcache's traps are owned here:

- every write is a meta command (``ms``/``md``) sent with ``raw_command``, which always waits
  for the reply — nothing is fire-and-forget (``default_noreply`` is off as well);
- no error is ever turned into a miss: ``ignore_exc`` stays off, and ``HashClient`` is not used
  because it answers ``None`` for keys of a server it has marked as failing and remaps keys of
  a "dead" server to the others (a split brain once it returns). Here a key always belongs to
  the same server; when that server is down its keys fail with a clear error;
- a write whose reply was lost raises :class:`UnknownOutcomeError` and is never resent.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import select
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from pymemcache.client.base import Client  # type: ignore[import-untyped]
from pymemcache.exceptions import (  # type: ignore[import-untyped]
    MemcacheClientError,
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownError,
)

from iii_state_core import BackendError, UnknownOutcomeError, ValueTooLargeError
from iii_state_core.retry import backoff

from .settings import Server, Settings

_EPOCHS = itertools.count(1)
T = TypeVar("T")
#: Builds a named tuple from its fields without its Python-level ``__new__`` (per pipelined reply).
_new: Any = tuple.__new__
_M64 = (1 << 64) - 1
log = logging.getLogger("iii_state.memcached")


#: The reply to ``mg <key> t`` for a key that exists without a native lifetime.
_LASTING = b"HD t-1\r\n"
#: Server statistics of which at least one changes whenever an item stops existing, or gains a
#: native lifetime, other than by expiring: evicted (for memory, or while moving slab pages),
#: dropped with a store refused for memory or size, flushed, touched; with the server's start
#: time (a restart resets everything). Deletes (``delete_hits``) and ``incr`` (marked by
#: :meth:`Node.signal`) are read too, less what this store's own tracked deletes explain
#: (:func:`_liveness`). Together they tell :meth:`Listing.count` whether what it probed before
#: still holds.
_LIVENESS = (
    b"pid",
    b"evictions",
    b"slab_reassign_evictions_nomem",
    b"slab_reassign_busy_deletes",
    b"store_no_memory",
    b"store_too_large",
    b"cmd_flush",
    b"cmd_touch",
)
#: What one tracked delete adds to the ``removes`` counter when it begins: one to the begun
#: count (bits 32 and up) and one to the in-flight count (the low bits); its end takes one off.
_BEGUN = (1 << 32) + 1
_LOW = (1 << 32) - 1
_END_FAILED = "memcached at %s: ending a delete failed (counts will probe): %s"


class Conn(Client):  # type: ignore[misc]
    """A pymemcache ``Client`` that numbers its TCP connections.

    ``epoch`` changes whenever the client (re)connects, so a cas remembered on one
    connection is only trusted while that same connection — hence the same server process,
    whose cas counter it came from — is still open.
    """

    epoch = 0
    _poll: Any = None
    #: A request was sent whose replies end with ``MN`` and were not read yet (``Node._drain``).
    owed = False

    def _connect(self) -> None:
        super()._connect()
        self.epoch = next(_EPOCHS)
        self.owed = False
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)

    def dropped(self) -> bool:
        """True when the idle connection has something to read: the server closed it (or the
        stream is out of step). Nothing else ever arrives unasked on a memcached connection."""
        if self.sock is None or self._poll is None:
            return False
        try:
            return bool(self._poll.poll(0))
        except (OSError, ValueError):
            return True


class OutOfMemoryError(BackendError):
    """The server had no memory for the item. memcached then also *drops* the item the store
    would have replaced (its "no stale data" rule), so callers put the old one back."""


class Stored(NamedTuple):
    """The reply to a conditional store: ``ok``, the item's new cas, and the connection epoch."""

    ok: bool
    cas: bytes
    epoch: int


def _detail(exc: BaseException) -> str:
    if isinstance(exc, MemcacheServerError) and exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("ascii", "replace")
    if isinstance(exc, MemcacheClientError):
        # the message of an unknown-command error repeats the whole command, data included
        return type(exc).__name__
    return str(exc) or type(exc).__name__


class CasStore(NamedTuple):
    """One conditional store of :meth:`Node.store_many`: only if ``key`` is still at ``cas``
    (remembered on connection ``epoch``; ``None``: read just now), to live ``ttl`` seconds."""

    key: bytes
    item: bytes
    cas: bytes
    ttl: int = 0
    epoch: int | None = None


class Node:
    """One server: a small pool of connections and the commands the adapter sends it."""

    def __init__(self, server: Server, settings: Settings) -> None:
        self.server = server
        self.name = server.name
        self.seed = int.from_bytes(hashlib.blake2b(self.name.encode(), digest_size=8).digest(), "big")
        self._settings = settings
        self._idle: deque[Conn] = deque()
        #: This store's delete counters on this server (``removes``, ``hits``): see
        #: :meth:`delete_tracked` and :func:`_liveness`. ``None``: deletes are not tracked.
        self.counters: tuple[bytes, bytes] | None = None

    def _new(self) -> Conn:
        s = self._settings
        return Conn(
            self.server.spec,
            connect_timeout=s.connect_timeout,
            timeout=s.timeout,
            no_delay=True,
            ignore_exc=False,
            default_noreply=False,
            tls_context=s.tls,
        )

    def _acquire(self) -> Conn:
        try:
            conn = self._idle.pop()
        except IndexError:
            return self._new()
        if conn.owed:
            self._drain(conn)
        # An idle connection the server closed (it restarted, or dropped idle clients) reads as
        # EOF: close it here so the command opens a new one, instead of failing on it — a write
        # failing after it was sent would have to be reported as an unknown outcome.
        if conn.dropped():
            conn.close()
        return conn

    def _release(self, conn: Conn) -> None:
        if conn.sock is not None and len(self._idle) < self._settings.pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    # -- reads ---------------------------------------------------------------------------------
    def _read_error(self, op: str, exc: BaseException) -> BackendError:
        return BackendError(f"memcached at {self.name}: {op} failed: {_detail(exc)}")

    def _read(self, op: str, call: Callable[[Conn], T]) -> tuple[T, int]:
        """Run a read and return its result and the connection's epoch.

        Reads skip the dropped-connection check that writes make: a read that meets a pooled
        connection the server has closed is simply sent once more on a new connection, which a
        write could not be.
        """
        try:
            conn = self._idle.pop()
            if conn.owed:
                self._drain(conn)
        except IndexError:
            conn = self._new()
        reused = conn.sock is not None
        try:
            try:
                return call(conn), conn.epoch
            except (MemcacheUnexpectedCloseError, ConnectionError):
                if not reused:
                    raise
                conn.close()
                return call(conn), conn.epoch
        except (MemcacheError, OSError) as exc:
            raise self._read_error(op, exc) from exc
        finally:
            self._release(conn)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._read("get", lambda conn: conn.get(key))[0]
        return value

    def gets(self, key: bytes) -> tuple[bytes | None, bytes | None, int]:
        """``(item, cas, epoch)``; ``(None, None, epoch)`` when the key is missing."""
        (item, cas), epoch = self._read("gets", lambda conn: conn.gets(key))
        return item, cas, epoch

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """``{key: item}`` of the keys that exist, in one write and one read of the replies."""
        if not keys:
            return {}
        found: dict[bytes, bytes] = self._read("get", lambda conn: _fetch(conn, b"get", keys))[0]
        return found

    def gets_many(self, keys: list[bytes]) -> tuple[dict[bytes, tuple[bytes, bytes]], int]:
        """``({key: (item, cas)}, epoch)`` for the keys that exist, in one request."""
        if not keys:
            return {}, 0
        found, epoch = self._read("gets", lambda conn: _fetch(conn, b"gets", keys))
        return found, epoch

    def probe(self, keys: list[bytes]) -> tuple[list[bytes | None], int]:
        """The cas of each key (``None``: missing) without its value, in one request."""

        def fetch(conn: Conn) -> list[bytes | None]:
            replies = conn._misc_cmd([b"mg %s c\r\n" % key for key in keys], b"mg", False, b"\r\n")
            return [_cas_of(reply) for reply in replies]

        return self._read("get", fetch)

    def remaining(self, keys: list[bytes]) -> list[int | None]:
        """Each key's remaining native lifetime in seconds (``-1``: none; ``None``: missing),
        without values: ``mg <key> t`` per key, then ``mn``, in one write per 1,000 keys. Replies
        come in order; a batch of keys that all exist without a lifetime (the common case) is
        recognised by comparing its whole reply with the one such a batch gets."""

        def fetch(conn: Conn) -> list[int | None]:
            if conn.sock is None:
                conn._connect()
            found: list[int | None] = []
            for at in range(0, len(keys), 1000):
                batch = keys[at : at + 1000]
                try:
                    conn.sock.sendall(b"mg " + b" t\r\nmg ".join(batch) + b" t\r\nmn\r\n")
                    chunks: list[bytes] = []
                    tail = b""
                    while not tail.endswith(b"MN\r\n"):
                        chunk = conn.sock.recv(65536)
                        if not chunk:
                            raise MemcacheUnexpectedCloseError()
                        chunks.append(chunk)
                        tail = (tail + chunk)[-8:]
                except BaseException:
                    conn.close()
                    raise
                data = b"".join(chunks)
                if data == _LASTING * len(batch) + b"MN\r\n":
                    found += [-1] * len(batch)
                    continue
                lines = data.split(b"\r\n")
                if len(lines) != len(batch) + 2 or lines[-2] != b"MN":
                    conn.close()
                    raise self._bad_probe(data)
                for line in lines[:-2]:
                    found.append(self._lifetime(conn, line))
            return found

        return self._read("get", fetch)[0] if keys else []

    def _lifetime(self, conn: Conn, line: bytes) -> int | None:
        if line == b"EN":
            return None
        if line.startswith(b"HD "):
            for token in line[3:].split():
                if token[:1] == b"t":
                    try:
                        return int(token[1:])
                    except ValueError:
                        break
        conn.close()
        raise self._bad_probe(line)

    def _bad_probe(self, line: bytes) -> BackendError:
        return BackendError(f"memcached at {self.name}: unexpected reply to a probe: {line[:40]!r}")

    def stats(self, *args: str) -> dict[bytes, Any]:
        result: dict[bytes, Any] = self._read("stats", lambda conn: conn.stats(*args))[0]
        return result

    def liveness(self) -> tuple[object, ...]:
        """What :func:`_liveness` makes of the server's ``stats`` read between two readings of
        this store's delete counters (``counters``), one request."""
        return self.get_many_after_liveness([])[1]

    def get_many_after_liveness(self, keys: list[bytes]) -> tuple[dict[bytes, bytes], tuple[object, ...]]:
        """:meth:`liveness`, then :meth:`get_many` of ``keys``, in one request."""
        stats: dict[bytes, bytes] = {}
        read: dict[tuple[int, bytes], bytes] = {}
        counters = self.counters

        def fetch(conn: Conn) -> dict[bytes, bytes]:
            return _fetch(conn, b"get", keys, stats, counters, read)

        found: dict[bytes, bytes] = self._read("get", fetch)[0]
        return found, _liveness(stats, counters, read)

    # -- tracked deletes (decision 0022) ---------------------------------------------------------
    def delete_tracked(self, key: bytes, cas: bytes, epoch: int | None = None) -> bool | None:
        """:meth:`delete`, begun on this store's ``removes`` counter in the same request.

        Unless it returns ``None`` (``epoch`` did not match: nothing was sent), the caller must
        call :meth:`end_tracked` once whatever the delete changed is in the listing index; until
        then (or for ever, if the caller dies) counts read this server as changing.
        """
        if self.counters is None:
            return self.delete(key, cas, epoch)
        conn = self._acquire()
        try:
            if epoch is not None and (conn.epoch != epoch or conn.sock is None):
                return None
            self._connected(conn)  # nothing was sent if it raises
            begin = b"ma %s N0 J%d D%d\r\n" % (self.counters[0], _BEGUN, _BEGUN)
            try:
                began, reply = self._send_all(conn, "delete", [begin, b"md %s C%s\r\n" % (key, cas)])
            except UnknownOutcomeError:
                raise
            except BackendError as exc:  # a refused begin: the md after it ran all the same
                raise self._unknown("delete", str(exc)) from None
            if began.startswith(b"HD") and (reply.startswith(b"HD") or reply[:2] in (b"EX", b"NF")):
                return reply.startswith(b"HD")
            conn.close()  # out of step with the server: never reuse this connection
        finally:
            self._release(conn)
        if began.startswith(b"HD"):  # begun: end it (the md's outcome is unknown, so unreflected)
            self.end_tracked(reflected=False)
        raise self._unknown("delete", f"unexpected reply {began[:20]!r} / {reply[:20]!r}")

    def delete_counted(self, key: bytes, cas: bytes) -> bool:
        """:meth:`delete` of an item no listing index entry names (a scope shard, a schedule
        slot, a stash), tracked and ended at once: a count need not probe after it."""
        deleted = self.delete_tracked(key, cas)
        if deleted is not None and self.counters is not None:
            self.end_tracked(reflected=deleted)
        return deleted is True

    def delete_tracked_many(self, deletes: list[tuple[bytes, bytes]]) -> list[bool]:
        """:meth:`delete_tracked` of each ``(key, cas)`` (distinct keys), pipelined: one write,
        one read of the replies. Each delete is begun by its own ``ma`` just before its ``md``,
        exactly as one :meth:`delete_tracked` sends it, so the counters' arithmetic (decision
        0022: one ``incr`` per begin) is unchanged. :returns: per delete, ``True`` when it
        deleted the item; the caller must then :meth:`end_tracked_many` every one of them.

        :raises UnknownOutcomeError: when a reply was lost or out of step (the ones begun stay
            in flight, or are ended unreflected: counts probe, as after a lost single delete).
        """
        if not deletes:
            return []
        if self.counters is None:
            conn = self._acquire()
            try:
                commands = [b"md %s C%s\r\n" % (key, cas) for key, cas in deletes]
                replies = self._send_all(conn, "delete", commands)
                if all(reply.startswith(b"HD") or reply[:2] in (b"EX", b"NF") for reply in replies):
                    return [reply.startswith(b"HD") for reply in replies]
                conn.close()  # out of step with the server: never reuse this connection
            finally:
                self._release(conn)
            raise self._unknown("delete", "unexpected reply in a pipelined delete")
        begin = b"ma %s N0 J%d D%d\r\n" % (self.counters[0], _BEGUN, _BEGUN)
        commands = []
        for key, cas in deletes:
            commands += [begin, b"md %s C%s\r\n" % (key, cas)]
        conn = self._acquire()
        try:
            try:
                replies = self._send_all(conn, "delete", commands)
            except UnknownOutcomeError:
                raise
            except BackendError as exc:  # a refused begin: the commands after it ran all the same
                raise self._unknown("delete", str(exc)) from None
            began = [reply.startswith(b"HD") for reply in replies[0::2]]
            done = replies[1::2]
            if all(began) and all(r.startswith(b"HD") or r[:2] in (b"EX", b"NF") for r in done):
                return [r.startswith(b"HD") for r in done]
            conn.close()  # out of step with the server: never reuse this connection
        finally:
            self._release(conn)
        self.end_tracked_many([False] * sum(began))  # begun: end them (outcomes unknown, unreflected)
        raise self._unknown("delete", "unexpected reply in a pipelined delete")

    def end_tracked(self, reflected: bool) -> None:
        """End a tracked delete: ``reflected`` (it deleted an item and the index says so) adds
        it to the ``hits`` counter first. Sent quiet, ending in ``mn``, and not waited for: the
        next user of the connection reads the ``MN`` (``_drain``) — the pool hands the latest
        connection out first, so this process's next request to the server comes after it.
        Failures are logged, never raised: the delete is done, and a begun delete never ended
        only makes counts probe (``_liveness``)."""
        self.end_tracked_many([reflected])

    def end_tracked_many(self, reflected: list[bool]) -> None:
        """:meth:`end_tracked` of several tracked deletes, each ended by its own commands (in
        one quiet write, one ``mn``)."""
        if self.counters is None or not reflected:
            return
        removes, hits = self.counters
        commands = []
        for one in reflected:
            if one:
                commands.append(b"ma %s N0 J1 q\r\n" % hits)
            commands.append(b"ma %s MD q\r\n" % removes)
        commands.append(b"mn\r\n")
        conn = self._acquire()
        try:
            if conn.sock is None:
                conn._connect()
            conn.sock.sendall(b"".join(commands))
            conn.owed = True
        except (MemcacheError, OSError) as exc:
            conn.close()
            log.warning(_END_FAILED, self.name, _detail(exc))
        finally:
            self._release(conn)

    def _drain(self, conn: Conn) -> None:
        """Read the replies of :meth:`end_tracked`'s request, up to its ``MN``. A reply other
        than ``MN`` or ``HD`` (which quiet ``ma`` still sends when it creates the counter) is
        logged (a counter gone: ``NF``); the connection stays in step."""
        conn.owed = False
        try:
            lines = _lines_until_mn(conn)
        except (MemcacheError, OSError) as exc:
            conn.close()
            log.warning(_END_FAILED, self.name, _detail(exc))
            return
        odd = [line for line in lines if line != b"HD"]
        if odd:
            log.warning("memcached at %s: unexpected reply ending a delete: %r", self.name, odd)

    def signal(self, key: bytes) -> None:
        """Change this server's ``incr_misses`` (or ``incr_hits``): ``ma <key>`` on a key
        nothing stores. Raises if the server did not take it."""
        conn = self._acquire()
        try:
            reply = self._send(conn, "lifetime signal", b"ma %s" % key)
        except UnknownOutcomeError as exc:  # the write it comes before was not sent
            raise BackendError(f"{exc} (a signal before a write; nothing was written)") from None
        finally:
            self._release(conn)
        if reply[:2] not in (b"NF", b"HD", b"VA"):
            raise BackendError(f"memcached at {self.name}: unexpected reply to a signal: {reply[:40]!r}")

    # -- confirmed writes ----------------------------------------------------------------------
    def _send(self, conn: Conn, op: str, command: bytes) -> bytes:
        """Send one meta command and return its reply line (see :meth:`_send_all`)."""
        return self._send_all(conn, op, [command + b"\r\n"])[0]

    def _connected(self, conn: Conn) -> None:
        """Connect ``conn`` if it is not; :raises BackendError: when that fails (nothing was sent)."""
        if conn.sock is None:
            try:
                conn._connect()
            except (MemcacheError, OSError) as exc:
                conn.close()
                raise BackendError(f"memcached at {self.name}: cannot connect: {_detail(exc)}") from exc

    def _send_all(self, conn: Conn, op: str, commands: list[bytes]) -> list[bytes]:
        """Send meta commands (each ending in CRLF) in one write and return their reply lines.

        The server runs them in order, so a read sent after a write sees that write.

        :raises BackendError: when the first was certainly not applied (no connection, refusal).
        :raises UnknownOutcomeError: when they were sent and a reply was lost.
        """
        self._connected(conn)
        try:
            replies = _meta_replies(conn, commands)
        except MemcacheUnexpectedCloseError as exc:
            raise self._unknown(op, "the server closed the connection") from exc
        except MemcacheServerError as exc:
            # pymemcache closed the connection: replies after this one were not read
            text = _detail(exc)
            if "too large" in text:
                raise ValueTooLargeError(
                    f"memcached at {self.name} refused an item as too large for its item size limit"
                ) from None
            if "out of memory" in text:
                raise OutOfMemoryError(
                    f"memcached at {self.name} is out of memory (started with -M it may not evict; "
                    f"without -M nothing of this size could be evicted): the {op} was refused"
                ) from None
            raise BackendError(f"memcached at {self.name}: {op} refused: {text}") from None
        except MemcacheClientError as exc:
            raise BackendError(
                f"memcached at {self.name} refused {op} ({_detail(exc)}); the adapter needs "
                f"memcached 1.6 with the meta protocol (ms/md)"
            ) from None
        except (MemcacheError, OSError) as exc:
            raise self._unknown(op, _detail(exc)) from exc
        return replies

    def _unknown(self, op: str, why: str) -> UnknownOutcomeError:
        return UnknownOutcomeError(
            f"memcached at {self.name}: {op} was sent but no reply came ({why}); "
            f"it may or may not have been applied"
        )

    def _done(self, conn: Conn, op: str, command: bytes, not_done: tuple[bytes, ...]) -> bool:
        """Send a command answered ``HD`` (done, ``True``) or one of ``not_done`` (``False``)."""
        reply = self._send(conn, op, command)
        if reply.startswith(b"HD"):
            return True
        if reply[:2] in not_done:
            return False
        conn.close()  # out of step with the server: never reuse this connection
        raise self._unknown(op, f"unexpected reply {reply[:20]!r}")

    def _store_on(self, conn: Conn, key: bytes, item: bytes, mode: bytes) -> Stored:
        reply = self._send(conn, "store", b"ms %s %d %s c\r\n%s" % (key, len(item), mode, item))
        return self._stored(conn, reply)

    def _stored(self, conn: Conn, reply: bytes) -> Stored:
        if reply.startswith(b"HD"):
            for token in reply.split()[1:]:
                if token[:1] == b"c":
                    return Stored(True, token[1:], conn.epoch)
            return Stored(True, b"", conn.epoch)
        if reply[:2] in (b"NS", b"EX", b"NF"):
            return Stored(False, b"", conn.epoch)
        conn.close()  # out of step with the server: never reuse this connection
        raise self._unknown("store", f"unexpected reply {reply[:20]!r}")

    def put_back(self, key: bytes, item: bytes, ttl: int = 0) -> bool:
        """After an out-of-memory store dropped ``item``: add it again (its memory was just freed).

        :returns: ``False`` when it could not be (someone stored the key meanwhile, or no memory).
        """
        for attempt in range(6):
            try:
                return self.store(key, item, None, ttl).ok
            except OutOfMemoryError:
                # the dropped item's memory is not always free at once (another thread of the
                # server may still hold it): give it a moment, drawn as every back-off of the pack
                time.sleep(backoff(attempt, base=0.002, cap=0.064))
            except BackendError:
                return False
        return False

    def store(self, key: bytes, item: bytes, cas: bytes | None, ttl: int = 0) -> Stored:
        """Store ``item`` only if the key's cas is still ``cas`` (``None``: only if missing),
        to live ``ttl`` seconds (0: until evicted)."""
        mode = (b"ME" if cas is None else b"C" + cas) + _lifetime(ttl)
        conn = self._acquire()
        try:
            return self._store_on(conn, key, item, mode)
        finally:
            self._release(conn)

    def store_probing(
        self,
        key: bytes,
        item: bytes,
        cas: bytes | None,
        probes: list[bytes],
        epoch: int | None = None,
        *,
        append: bool = False,
        ttl: int = 0,
    ) -> tuple[Stored, list[bytes | None]] | None:
        """:meth:`store`, then the cas of each of ``probes`` read *after* it, in one round trip.

        With ``epoch``, only on that connection (``None`` when it is not the one at hand).
        With ``append``, ``item`` is added to the end of the stored item (which must be at ``cas``).
        """
        conn = self._acquire()
        try:
            if epoch is not None and (conn.epoch != epoch or conn.sock is None):
                return None
            mode = (b"ME" if cas is None else (b"MA C" if append else b"C") + cas) + _lifetime(ttl)
            commands = [b"ms %s %d %s c\r\n%s\r\n" % (key, len(item), mode, item)]
            commands += [b"mg %s c\r\n" % probe for probe in probes]
            replies = self._send_all(conn, "store", commands)
            stored = self._stored(conn, replies[0])
            return stored, [_cas_of(reply) for reply in replies[1:]]
        finally:
            self._release(conn)

    def set_all(self, items: list[tuple[bytes, bytes]], ttl: int = 0) -> None:
        """Store every ``(key, item)`` unconditionally, in one write and one read of the replies.

        :raises BackendError: when one was refused (or not sent); an unknown outcome when a
            reply was lost.
        """
        if not items:
            return
        conn = self._acquire()
        try:
            self._connected(conn)
            # quiet (``q``): a stored item is not answered, so the reply is one ``MN`` unless
            # something was refused: one short read instead of a line per item
            lifetime = _lifetime(ttl)
            commands = [b"ms %s %d%s q\r\n%s\r\n" % (key, len(item), lifetime, item) for key, item in items]
            commands.append(b"mn\r\n")
            try:
                conn.sock.sendall(b"".join(commands))
                refused = _lines_until_mn(conn)
            except (MemcacheError, OSError) as exc:
                conn.close()
                raise self._unknown("store", _detail(exc)) from exc
            if refused:
                conn.close()  # out of step or refused: never reuse this connection
                shown = refused[0][:60].decode("ascii", "replace")
                raise BackendError(f"memcached at {self.name}: a store was refused: {shown}")
        finally:
            self._release(conn)

    def add_all(self, items: list[tuple[bytes, bytes]], ttl: int = 0) -> list[bool]:
        """Store each ``(key, item)`` only if its key is missing, in one write and one read of
        the replies. :returns: per item, ``True`` when it was stored (``False``: the key exists).

        :raises BackendError: when the first was not sent or one was refused (the rest unknown,
            the connection closed); an unknown outcome when a reply was lost.
        """
        if not items:
            return []
        conn = self._acquire()
        try:
            lifetime = _lifetime(ttl)
            commands = [b"ms %s %d ME%s\r\n%s\r\n" % (key, len(item), lifetime, item) for key, item in items]
            replies = self._send_all(conn, "store", commands)
            if all(reply.startswith(b"HD") or reply[:2] in (b"NS", b"EX", b"NF") for reply in replies):
                return [reply.startswith(b"HD") for reply in replies]
            conn.close()  # out of step with the server: never reuse this connection
        finally:
            self._release(conn)
        raise self._unknown("store", "unexpected reply in a pipelined add")

    def append(self, key: bytes, data: bytes) -> bool:
        """Append ``data`` to an existing item; ``False`` when it is missing."""
        conn = self._acquire()
        try:
            command = b"ms %s %d MA\r\n%s" % (key, len(data), data)
            return self._done(conn, "append", command, not_done=(b"NS", b"NF"))
        finally:
            self._release(conn)

    def store_on_epoch(self, key: bytes, item: bytes, cas: bytes, epoch: int, ttl: int = 0) -> Stored | None:
        """Like :meth:`store`, but only on the connection ``epoch`` names; ``None``: not sent."""
        conn = self._acquire()
        try:
            if conn.epoch != epoch or conn.sock is None:
                return None
            return self._store_on(conn, key, item, b"C" + cas + _lifetime(ttl))
        finally:
            self._release(conn)

    def store_many(
        self, stores: list[CasStore], *, append: Sequence[bool] | None = None
    ) -> list[Stored | Exception | None]:
        """Conditional stores of distinct keys on one connection, sent in one write.

        ``append``: per store, whether its ``item`` is appended to the stored item instead (still
        only if that is at ``cas``: ``ms <key> MA C<cas>``), so only the new bytes travel;
        ``Stored.cas`` is then the cas of the whole item, the stored bytes followed by ``item``.

        Each is ``ms <key> C<cas>`` (a :class:`CasStore`), answered as :meth:`store` answers it
        (``Stored``), or ``None`` when its ``epoch`` names another connection (not sent), or the
        exception its own reply gave: a refusal (too large, out of memory: that store only, the
        server reads the next command on), or, from the first reply lost or out of step on,
        :class:`UnknownOutcomeError` (sent, outcome unknown). Nothing is sent when no connection
        can be made: each then fails with that :class:`BackendError`.
        """
        conn = self._acquire()
        try:
            if conn.sock is None:
                try:
                    conn._connect()
                except (MemcacheError, OSError) as exc:
                    conn.close()
                    failed = BackendError(f"memcached at {self.name}: cannot connect: {_detail(exc)}")
                    return [failed] * len(stores)
            sent = [i for i, s in enumerate(stores) if s.epoch is None or s.epoch == conn.epoch]
            out: list[Stored | Exception | None] = [None] * len(stores)
            if append is None:
                request = b"".join([
                    b"ms %s %d C%s%s c\r\n%s\r\n" % (s.key, len(s.item), s.cas, _lifetime(s.ttl), s.item)
                    for s in (stores[i] for i in sent)
                ])  # fmt: skip
            else:
                request = b"".join([
                    b"ms %s %d %sC%s%s c\r\n%s\r\n"
                    % (s.key, len(s.item), b"MA " if append[i] else b"", s.cas, _lifetime(s.ttl), s.item)
                    for i, s in ((i, stores[i]) for i in sent)
                ])  # fmt: skip
            try:
                conn.sock.sendall(request)
            except (MemcacheError, OSError) as exc:
                conn.close()
                for i in sent:
                    out[i] = self._unknown("store", _detail(exc))
                return out
            replies = _reply_lines(conn, len(sent))
            epoch = conn.epoch
            for n, i in enumerate(sent):
                if n >= len(replies):
                    out[i] = self._lost()
                    continue
                reply = replies[n]
                if reply[:4] == b"HD c" and reply.find(b" ", 4) < 0:  # stored, its new cas: the usual
                    out[i] = _new(Stored, (True, reply[4:], epoch))
                else:
                    out[i] = self._store_reply(conn, reply)
            return out
        finally:
            self._release(conn)

    def _store_reply(self, conn: Conn, reply: bytes) -> Stored | Exception:
        """One pipelined store's reply as :meth:`_stored` reads it, refusals as their errors."""
        if reply.startswith(b"SERVER_ERROR"):
            text = reply.decode("ascii", "replace")
            if "too large" in text:
                return ValueTooLargeError(
                    f"memcached at {self.name} refused an item as too large for its item size limit"
                )
            if "out of memory" in text:
                return OutOfMemoryError(
                    f"memcached at {self.name} is out of memory (started with -M it may not evict; "
                    f"without -M nothing of this size could be evicted): the store was refused"
                )
            return BackendError(f"memcached at {self.name}: store refused: {text}")
        try:
            return self._stored(conn, reply)
        except UnknownOutcomeError as exc:
            return exc

    def _lost(self) -> UnknownOutcomeError:
        return self._unknown("store", "the connection failed before this store's reply came")

    def delete(self, key: bytes, cas: bytes, epoch: int | None = None) -> bool | None:
        """Delete the item only if its cas is still ``cas``; ``None`` when ``epoch`` did not match."""
        conn = self._acquire()
        try:
            if epoch is not None and (conn.epoch != epoch or conn.sock is None):
                return None
            return self._done(conn, "delete", b"md %s C%s" % (key, cas), not_done=(b"EX", b"NF"))
        finally:
            self._release(conn)


def _liveness(
    stats: dict[bytes, bytes], counters: tuple[bytes, bytes] | None, read: dict[tuple[int, bytes], bytes]
) -> tuple[object, ...]:
    """The server's start time, its ``_LIVENESS`` counters, and the deletes and ``incr`` it
    counted that this store's tracked deletes do not explain (decision 0022).

    ``read`` holds the ``removes`` counter read before ``stats`` (``(0, key)``) and after it
    (``(2, key)``), and ``hits`` (``(0, key)``). The same ``removes`` both times with nothing
    in flight means no tracked delete began or ended while ``stats`` was read, and every one
    begun before had ended, its change already in the listing index: then ``delete_hits``
    less ``hits`` moves only with a delete nobody tracked (another client, a crash between a
    delete and its index change), which ``Listing.count`` must see. Anything else reads as a
    fresh object, equal to nothing: counts probe.
    """
    try:
        started: int | None = int(stats[b"time"]) - int(stats[b"uptime"])
        deletes, incrs = int(stats[b"delete_hits"]), int(stats[b"incr_hits"]) + int(stats[b"incr_misses"])
    except (KeyError, ValueError):
        return (object(),)  # never equal to a real reading: every count probes
    if counters is not None:
        removes, hits = counters
        before, after = read.get((0, removes)), read.get((2, removes))
        try:
            begun = int(before) if before is not None else 0
            tracked = int(read[(0, hits)]) if (0, hits) in read else 0
        except ValueError:
            return (object(),)
        if before != after or begun & _LOW:
            return (object(),)  # a tracked delete in flight: its index change may be pending
        deletes -= tracked
        # each counter is created by its first bump (memcached counts no incr for that one)
        incrs -= max(0, (begun >> 32) - 1) + max(0, tracked - 1)
    return (started, *(stats.get(name) for name in _LIVENESS), deletes, incrs)


#: Keys per ``get`` line: bounded, so each request line stays far below memcached's line limit.
_KEYS_PER_LINE = 100


def _fetch(
    conn: Conn,
    verb: bytes,
    keys: list[bytes],
    stats: dict[bytes, bytes] | None = None,
    counters: tuple[bytes, bytes] | None = None,
    read: dict[tuple[int, bytes], bytes] | None = None,
) -> dict[bytes, Any]:
    """``get``/``gets`` of ``keys`` (``verb``), every line sent in one write, the replies parsed
    here from whole buffers: pymemcache's ``get_many`` spends more per key in its line-by-line
    reader than the server does. ``gets`` answers ``(item, cas)`` per key. With ``stats``, a
    ``stats`` command goes first in the same write and its figures are put there; with
    ``counters`` too, ``get`` of both goes before it and of the first after it, their values in
    ``read`` by ``(0 | 2, key)``.

    :raises MemcacheError: on an error reply or a reply out of step (the connection is closed).
    """
    if conn.sock is None:
        conn._connect()
    lines = [verb + b" " + b" ".join(keys[at : at + _KEYS_PER_LINE]) + b"\r\n"
             for at in range(0, len(keys), _KEYS_PER_LINE)]  # fmt: skip
    head = 0  # lines before the keys' own: their replies go to ``stats`` and ``read``
    if stats is not None:
        lines.insert(0, b"stats\r\n")
        head = 1
        if counters is not None:
            lines[0:0] = [b"get %s %s\r\n" % counters]
            lines.insert(2, b"get %s\r\n" % counters[0])
            head = 3
    stats_at = head - 2 if head == 3 else 0
    with_cas = verb == b"gets"
    out: dict[bytes, Any] = {}
    try:
        sock = conn.sock
        sock.sendall(b"".join(lines))
        buf, at, ends = b"", 0, 0
        while True:
            eol = buf.find(b"\r\n", at)
            if eol < 0:
                buf, at = buf[at:] + _recv(sock), 0
                continue
            if buf.startswith(b"VALUE ", at):
                header = buf[at + 6 : eol].split(b" ")
                start = eol + 2
                stop = start + int(header[2])
                if len(buf) < stop + 2:
                    buf, at = _recv_at_least(sock, buf[at:], stop + 2 - at), 0
                    continue  # parse the header again, now that its value is all here
                if buf[stop : stop + 2] != b"\r\n":
                    raise MemcacheUnknownError(b"value not followed by CRLF")
                if ends < head and read is not None:
                    read[(ends, header[0])] = buf[start:stop]
                else:
                    out[header[0]] = (buf[start:stop], header[3]) if with_cas else buf[start:stop]
                at = stop + 2
            elif stats is not None and buf.startswith(b"STAT ", at) and ends == stats_at:
                name, _, figure = buf[at + 5 : eol].partition(b" ")
                stats[name] = figure
                at = eol + 2
            elif eol == at + 3 and buf.startswith(b"END", at):
                at = eol + 2
                ends += 1
                if ends == len(lines):
                    if at != len(buf):
                        raise MemcacheUnknownError(b"more replies than requests")
                    return out
            else:
                conn._raise_errors(buf[at:eol], verb)
                raise MemcacheUnknownError(buf[at : min(eol, at + 32)])
    except BaseException:
        conn.close()
        raise


def _meta_replies(conn: Conn, commands: list[bytes]) -> list[bytes]:
    """Send meta commands (each answered by one line) in one write; :returns: their reply lines.

    pymemcache's ``_misc_cmd`` with the same errors, read from whole buffers: it reads each line
    through a Python-level segment reader and checks it for three error prefixes, which cost the
    sweeper's pipelined requests more than the server's work. An error reply raises as there
    (``ERROR``, ``CLIENT_ERROR``, ``SERVER_ERROR``: the first one, the replies after it unread);
    more reply bytes than commands raise :class:`MemcacheUnknownError`. The connection is
    closed on any exception.
    """
    if conn.sock is None:
        conn._connect()
    want = len(commands)
    try:
        sock = conn.sock
        sock.sendall(b"".join(commands))
        buf = _recv(sock)
        while buf.count(b"\r\n") < want:
            if b"ERROR" in buf and _error_line(buf) is not None:
                break  # the server may not answer the commands after a refused one
            buf += _recv(sock)
        lines = buf.split(b"\r\n")
        if b"ERROR" in buf:
            error = _error_line(buf)
            if error is not None:
                conn._raise_errors(error, b"ms")
        if len(lines) != want + 1 or lines[-1]:
            raise MemcacheUnknownError(b"more replies than requests")
        del lines[-1]
        return lines
    except BaseException:
        conn.close()
        raise


def _error_line(buf: bytes) -> bytes | None:
    """The first whole line of ``buf`` that is an error reply, if any (a rare path)."""
    for line in buf.split(b"\r\n")[:-1]:
        if line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            return line
    return None


def _reply_lines(conn: Conn, count: int) -> list[bytes]:
    """Up to ``count`` reply lines; fewer (and the connection closed) when it fails or a reply
    is not a store's (``HD``/``NS``/``EX``/``NF``/``SERVER_ERROR``): the stream is out of step."""
    lines: list[bytes] = []
    buf, at = b"", 0
    try:
        while len(lines) < count:
            eol = buf.find(b"\r\n", at)
            if eol < 0:
                buf, at = buf[at:] + _recv(conn.sock), 0
                continue
            line = buf[at:eol]
            if line[:2] not in (b"HD", b"NS", b"EX", b"NF") and not line.startswith(b"SERVER_ERROR"):
                lines.append(line)  # read by _stored as out of step; nothing after it is trusted
                conn.close()
                return lines
            lines.append(line)
            at = eol + 2
    except (MemcacheError, OSError):
        conn.close()
        return lines
    if at != len(buf):
        conn.close()  # more than was asked for: never reuse this connection
    return lines


def _lines_until_mn(conn: Conn) -> list[bytes]:
    """The reply lines before the next ``MN`` line (that one read too)."""
    lines: list[bytes] = []
    buf, at = b"", 0
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            buf, at = buf[at:] + _recv(conn.sock), 0
            continue
        line, at = buf[at:eol], eol + 2
        if line == b"MN":
            if at != len(buf):
                raise MemcacheUnknownError(b"more replies than requests")
            return lines
        lines.append(line)


def _recv(sock: Any) -> bytes:
    chunk: bytes = sock.recv(65536)
    if not chunk:
        raise MemcacheUnexpectedCloseError()
    return chunk


def _recv_at_least(sock: Any, buf: bytes, size: int) -> bytes:
    """``buf`` and what follows it on ``sock``, at least ``size`` bytes (joined once)."""
    chunks, have = [buf], len(buf)
    while have < size:
        chunk = _recv(sock)
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def _lifetime(ttl: int) -> bytes:
    """The ``T`` flag of a store: memcached drops the item ``ttl`` seconds later (none for 0)."""
    return b" T%d" % ttl if ttl else b""


def _cas_of(reply: bytes) -> bytes | None:
    """The cas in an ``mg <key> c`` reply (``HD c<cas>``); ``None`` for a miss (``EN``)."""
    if reply.startswith(b"HD"):
        for token in reply.split()[1:]:
            if token[:1] == b"c":
                return token[1:]
    if reply.startswith(b"EN"):
        return None
    raise BackendError(f"memcached: unexpected reply to a probe: {reply[:20]!r}")


def _mix(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit mix for rendezvous scores."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class Cluster:
    """All servers; each key belongs to one by rendezvous (highest random weight) hashing.

    Rendezvous hashing does not depend on the order the servers are listed in, and adding or
    removing a server moves only the keys that it wins or held.
    """

    def __init__(self, settings: Settings) -> None:
        self.nodes = [Node(server, settings) for server in settings.servers]
        self._single = self.nodes[0] if len(self.nodes) == 1 else None

    def node(self, key: bytes) -> Node:
        if self._single is not None:
            return self._single
        h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
        return max(self.nodes, key=lambda n: _mix(h ^ n.seed))

    def by_node_of(self, items: Iterable[T], key_of: Callable[[T], bytes]) -> list[tuple[Node, list[T]]]:
        """``items`` grouped by the server holding each one's key (``key_of``), in order."""
        if self._single is not None:
            return [(self._single, list(items))]
        by_node: dict[int, tuple[Node, list[T]]] = {}
        for item in items:
            node = self.node(key_of(item))
            by_node.setdefault(id(node), (node, []))[1].append(item)
        return list(by_node.values())

    def by_node(self, keys: Iterable[bytes]) -> list[tuple[Node, list[bytes]]]:
        """The keys grouped by the server holding them, for one request per server."""
        return self._by_node(keys)

    def _by_node(self, keys: Iterable[bytes]) -> list[tuple[Node, list[bytes]]]:
        if self._single is not None:
            return [(self._single, list(keys))]
        by_node: dict[int, tuple[Node, list[bytes]]] = {}
        for key in keys:
            node = self.node(key)
            by_node.setdefault(id(node), (node, []))[1].append(key)
        return list(by_node.values())

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Fetch many keys with one batched request per server."""
        out: dict[bytes, bytes] = {}
        for node, batch in self._by_node(keys):
            out.update(node.get_many(batch))
        return out

    def gets_many(self, keys: list[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
        """``{key: (item, cas)}`` of the keys that exist, one request per server."""
        out: dict[bytes, tuple[bytes, bytes]] = {}
        for node, batch in self._by_node(keys):
            out.update(node.gets_many(batch)[0])
        return out

    def remaining(self, keys: list[bytes]) -> list[int | None]:
        """:meth:`Node.remaining` of ``keys`` (in their order), one request per server."""
        if self._single is not None:
            return self._single.remaining(keys)
        lifetimes: dict[bytes, int | None] = {}
        for node, batch in self._by_node(keys):
            lifetimes.update(zip(batch, node.remaining(batch), strict=True))
        return [lifetimes[key] for key in keys]

    def describe(self) -> str:
        names = [n.name for n in self.nodes]
        if len(names) == 1:
            return f"memcached at {names[0]}"
        return f"memcached at {', '.join(names)} (rendezvous hashing)"

    def close(self) -> None:
        for node in self.nodes:
            node.close()
