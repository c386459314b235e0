"""The kv stores' listing cursor: the hex of the last key's UTF-8 bytes, checked on the way in."""

from __future__ import annotations

from iii_state_core import InvalidCursorError


def encode(key: bytes) -> str:
    return key.hex()


def decode(cursor: str) -> bytes:
    """The key a cursor names.

    :raises InvalidCursorError: for anything :func:`encode` did not produce (a forged or
        edited cursor is a cursor error, never a backend failure).
    """
    try:
        key = bytes.fromhex(cursor)
        key.decode("utf-8")
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        raise InvalidCursorError(
            "cursor is not one this kv store handed out; pass the next_cursor of the previous "
            "page, or omit it to start from the beginning"
        ) from None
    if cursor != key.hex():  # upper case or spaces: fromhex accepts them, encode never writes them
        raise InvalidCursorError("cursor is not one this kv store handed out; start the walk again")
    return key
