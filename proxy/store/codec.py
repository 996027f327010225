"""A stored entry as bytes for a shared tier (Redis), and back. Pure: no I/O, no clock.

Why versioned: a fleet is upgraded one instance at a time, so two versions of sidecache read
the same keys for a while. Every value starts with a magic and a version; a value this code
does not know (another version, another program's key, a truncated write) is an
`EntryError`, which the tier counts and treats as a miss: never misread, never an error for
the visitor. The version is in the value, not the key, so that a delete (invalidation,
purge) by any version reaches entries every version wrote.

Why wall-clock times: a `CachedResponse`'s times are on its process's monotonic clock, which
means nothing in another process or on another host. They travel as epoch seconds (`offset`
= wall now - monotonic now, taken by the caller) and are put back on the reader's clock, so
the Age a reader sends and the freshness it judges are the writer's (as far as the hosts'
clocks agree: NTP's milliseconds do not matter to whole-second ages).

Layout of version 1 (little-endian):

    b"SC" version:u8 | status:u16 flags:u8 generation:u64
    | stored_at expires_at fresh_until initial_age stale_while_revalidate stale_if_error: f64
    | reason:str [etag:str] [last_modified:str] | vary:list | headers:pairs | tags:list
    | body:bytes

str and bytes are a u32 length and the octets (str as UTF-8, surrogates passed through, so
any header text survives), and the body ends the value exactly (a value cut short or with
more after it is refused);
list is a u16 count of str; pairs a u16 count of two str each. flags: bit 0
must_revalidate, bit 1 an etag follows, bit 2 a last_modified follows. The header block an
entry serialises for a hit is not stored: it is made again from the headers when decoded.
"""

from __future__ import annotations

import struct

from proxy.store import CachedResponse

MAGIC = b"SC"
VERSION = 1
_FIXED = struct.Struct("<2sBHBQdddddd")
_LENGTH = struct.Struct("<I")
_COUNT = struct.Struct("<H")
MUST_REVALIDATE, HAS_ETAG, HAS_LAST_MODIFIED = 1, 2, 4
MAX_COUNT = 0xFFFF


class EntryError(ValueError):
    """A value that is not an entry this version can read; `reason` is "version" (another
    version of the format) or "corrupt" (anything else)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode(entry: CachedResponse, offset: float, tags: tuple[str, ...] = ()) -> bytes:
    """`entry` as bytes, its times moved to the wall clock (`offset` = wall - monotonic).
    A ValueError when it cannot be written (more than 65535 headers, a generation past
    64 bits): the tier then does not write it."""
    try:
        return _encode(entry, offset, tags)
    except struct.error as exc:
        raise ValueError(f"cannot encode the entry: {exc}") from None


def _encode(entry: CachedResponse, offset: float, tags: tuple[str, ...]) -> bytes:
    flags = (
        (MUST_REVALIDATE if entry.must_revalidate else 0)
        | (HAS_ETAG if entry.etag is not None else 0)
        | (HAS_LAST_MODIFIED if entry.last_modified is not None else 0)
    )
    parts = [
        _FIXED.pack(
            MAGIC,
            VERSION,
            entry.status,
            flags,
            entry.generation,
            entry.stored_at + offset,
            entry.expires_at + offset,
            entry.fresh_until + offset,
            entry.initial_age,
            entry.stale_while_revalidate,
            entry.stale_if_error,
        ),
        _text(entry.reason),
    ]
    if entry.etag is not None:
        parts.append(_text(entry.etag))
    if entry.last_modified is not None:
        parts.append(_text(entry.last_modified))
    parts.append(_texts(entry.vary))
    parts.append(_COUNT.pack(len(entry.headers)))
    parts.extend(_text(name) + _text(value) for name, value in entry.headers)
    parts.append(_texts(tags))
    parts.append(_LENGTH.pack(len(entry.body)))
    parts.append(entry.body)
    return b"".join(parts)


def decode(data: bytes, offset: float) -> tuple[CachedResponse, tuple[str, ...]]:
    """The entry in `data` on this process's clock (`offset` = wall - monotonic), and its
    tags; an EntryError for anything else."""
    if len(data) < 3 or data[:2] != MAGIC:
        raise EntryError("corrupt", "not a sidecache entry")
    if data[2] != VERSION:
        raise EntryError("version", f"format version {data[2]}, this sidecache reads {VERSION}")
    try:
        return _decode(data, offset)
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise EntryError("corrupt", str(exc)) from None


def _decode(data: bytes, offset: float) -> tuple[CachedResponse, tuple[str, ...]]:
    fixed = _FIXED.unpack_from(data)
    _, _, status, flags, generation, stored, expires, fresh, age, swr, sie = fixed
    reader = _Reader(memoryview(data), _FIXED.size)
    reason = reader.text()
    etag = reader.text() if flags & HAS_ETAG else None
    last_modified = reader.text() if flags & HAS_LAST_MODIFIED else None
    vary = reader.texts()
    headers = tuple((reader.text(), reader.text()) for _ in range(reader.count()))
    tags = reader.texts()
    entry = CachedResponse(
        status=status,
        reason=reason,
        headers=headers,
        body=reader.body(),
        stored_at=stored - offset,
        expires_at=expires - offset,
        initial_age=age,
        fresh_until=fresh - offset,
        must_revalidate=bool(flags & MUST_REVALIDATE),
        etag=etag,
        last_modified=last_modified,
        vary=vary,
        generation=generation,
        stale_while_revalidate=swr,
        stale_if_error=sie,
    )
    return entry, tags


class _Reader:
    """Reads length-prefixed parts from `data`, from `at` on; a struct.error past the end."""

    def __init__(self, data: memoryview, at: int) -> None:
        self.data, self.at = data, at

    def count(self) -> int:
        (count,) = _COUNT.unpack_from(self.data, self.at)
        self.at += _COUNT.size
        return int(count)

    def text(self) -> str:
        (length,) = _LENGTH.unpack_from(self.data, self.at)
        start = self.at + _LENGTH.size
        end = start + length
        if end > len(self.data):
            raise struct.error(f"a text of {length} bytes past the end")
        self.at = end
        return str(self.data[start:end], "utf-8", "surrogatepass")

    def texts(self) -> tuple[str, ...]:
        return tuple(self.text() for _ in range(self.count()))

    def body(self) -> bytes:
        """The last part: its length must be exactly what is left."""
        (length,) = _LENGTH.unpack_from(self.data, self.at)
        start = self.at + _LENGTH.size
        if start + length != len(self.data):
            raise struct.error(f"a body of {length} bytes where {len(self.data) - start} are")
        return bytes(self.data[start:])


def _text(value: str) -> bytes:
    encoded = value.encode("utf-8", "surrogatepass")
    return _LENGTH.pack(len(encoded)) + encoded


def _texts(values: tuple[str, ...]) -> bytes:
    return _COUNT.pack(len(values)) + b"".join(_text(value) for value in values)
