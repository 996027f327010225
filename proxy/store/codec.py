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

Layout of version 2 (little-endian; version 1, never released, had no host and target):

    b"SC" version:u8 | status:u16 flags:u8 generation:u64
    | stored_at expires_at fresh_until initial_age stale_while_revalidate stale_if_error: f64
    | vary:u16 headers:u16 tags:u16 (counts) | lengths: u32 each | text:u32 bytes | body:u32 bytes

The texts (reason, host, target, [etag], [last_modified], the vary names, each header's name
and value, the tags) are one UTF-8 block (surrogates passed through, so any header text survives),
decoded at once and cut at the lengths (in characters): one decode and a slice per text,
which is what a hit from Redis pays. flags: bit 0 must_revalidate, bit 1 an etag is there,
bit 2 a last_modified. The body ends the value exactly: a value cut short, or with more
after it, is refused. The header block an entry serialises for a hit is not stored: it is
made again from the headers when decoded.
"""

from __future__ import annotations

import struct
from itertools import accumulate

from proxy.store import CachedResponse

MAGIC = b"SC"
VERSION = 2
_FIXED = struct.Struct("<2sBHBQddddddHHH")
_LENGTH = struct.Struct("<I")
MUST_REVALIDATE, HAS_ETAG, HAS_LAST_MODIFIED = 1, 2, 4
TEXTS_BEFORE = 3  # reason, host, target: the texts every entry has


class EntryError(ValueError):
    """A value that is not an entry this version can read; `reason` is "version" (another
    version of the format) or "corrupt" (anything else)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode(entry: CachedResponse, offset: float) -> bytes:
    """`entry` as bytes, its times moved to the wall clock (`offset` = wall - monotonic).
    A ValueError when it cannot be written (more than 65535 headers, a generation past
    64 bits): the tier then does not write it."""
    try:
        return _encode(entry, offset)
    except struct.error as exc:
        raise ValueError(f"cannot encode the entry: {exc}") from None


def _encode(entry: CachedResponse, offset: float) -> bytes:
    flags = MUST_REVALIDATE if entry.must_revalidate else 0
    texts = [entry.reason, entry.host, entry.target]
    if entry.etag is not None:
        flags |= HAS_ETAG
        texts.append(entry.etag)
    if entry.last_modified is not None:
        flags |= HAS_LAST_MODIFIED
        texts.append(entry.last_modified)
    texts.extend(entry.vary)
    for name, value in entry.headers:
        texts.append(name)
        texts.append(value)
    texts.extend(entry.tags)
    block = "".join(texts).encode("utf-8", "surrogatepass")
    fixed = _FIXED.pack(
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
        len(entry.vary),
        len(entry.headers),
        len(entry.tags),
    )
    lengths = struct.pack(f"<{len(texts)}I", *map(len, texts))
    body = entry.body
    return b"".join(
        (fixed, lengths, _LENGTH.pack(len(block)), block, _LENGTH.pack(len(body)), body)
    )


def decode(data: bytes, offset: float) -> CachedResponse:
    """The entry in `data` on this process's clock (`offset` = wall - monotonic); an
    EntryError for anything else."""
    if len(data) < 3 or data[:2] != MAGIC:
        raise EntryError("corrupt", "not a sidecache entry")
    if data[2] != VERSION:
        raise EntryError("version", f"format version {data[2]}, this sidecache reads {VERSION}")
    try:
        return _decode(data, offset)
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise EntryError("corrupt", str(exc)) from None


def _decode(data: bytes, offset: float) -> CachedResponse:
    fixed = _FIXED.unpack_from(data)
    _, _, status, flags, generation, stored, expires, fresh, age, swr, sie = fixed[:11]
    n_vary, n_headers, n_tags = fixed[11:]
    has_etag, has_modified = bool(flags & HAS_ETAG), bool(flags & HAS_LAST_MODIFIED)
    count = TEXTS_BEFORE + has_etag + has_modified + n_vary + 2 * n_headers + n_tags
    at = _FIXED.size
    ends = list(accumulate(struct.unpack_from(f"<{count}I", data, at), initial=0))
    at += 4 * count
    block, at = _part(data, at)
    text = str(block, "utf-8", "surrogatepass")
    if ends[-1] != len(text):
        raise ValueError(f"texts of {ends[-1]} characters in a block of {len(text)}")
    texts = [text[ends[i] : ends[i + 1]] for i in range(count)]
    body, at = _part(data, at)
    if at != len(data):
        raise ValueError(f"{len(data) - at} bytes after the body")
    i = TEXTS_BEFORE + has_etag + has_modified
    vary = tuple(texts[i : i + n_vary])
    i += n_vary
    fields = texts[i : i + 2 * n_headers]
    headers = tuple(zip(fields[::2], fields[1::2], strict=True))
    return CachedResponse(
        status=status,
        reason=texts[0],
        headers=headers,
        body=body,
        stored_at=stored - offset,
        expires_at=expires - offset,
        initial_age=age,
        fresh_until=fresh - offset,
        must_revalidate=bool(flags & MUST_REVALIDATE),
        etag=texts[TEXTS_BEFORE] if has_etag else None,
        last_modified=texts[TEXTS_BEFORE + has_etag] if has_modified else None,
        vary=vary,
        generation=generation,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        host=texts[1],
        target=texts[2],
        tags=tuple(texts[i + 2 * n_headers :]),
    )


def _part(data: bytes, at: int) -> tuple[bytes, int]:
    """The length-prefixed octets at `at`, and where the next part starts."""
    (length,) = _LENGTH.unpack_from(data, at)
    start = at + _LENGTH.size
    end = start + length
    if end > len(data):
        raise ValueError(f"a part of {length} bytes past the end")
    return data[start:end], end
