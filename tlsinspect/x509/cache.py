"""A cache of what is computed from certificates, bounded in entries and in bytes.

`functools.lru_cache` bounds the count of entries only; keyed by DER (or by the DER of a name),
its memory then follows the size of the certificates, which the capture chooses (a message
may hold 1 MiB of them). `bounded_cache` bounds both the entries and the bytes of the keys
(what is computed from a certificate is of the order of its DER, so the values follow), and
never keeps an entry larger than 1/16 of its bytes: such a certificate is computed again when
met again. Least recently used entries leave first, as with `lru_cache`.

Pure and single-threaded: an engine's loop calls it, as it calls the functions it wraps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

# Bytes of keys per cache: certificates (DER; their caches share the same bytes objects mostly,
# and each value is of the order of its key) and distinguished names (a few hundred bytes each).
CERT_CACHE_BYTES = 4 << 20
NAME_CACHE_BYTES = 1 << 20


def _size(args: tuple[object, ...]) -> int:
    """The bytes of a key: its bytes and strings, also inside tuples."""
    n = 0
    for a in args:
        if isinstance(a, (bytes, str)):
            n += len(a)
        elif isinstance(a, tuple):
            n += _size(a)
    return n


def bounded_cache(max_entries: int, max_bytes: int) -> Callable[[F], F]:
    """Cache a function of positional, hashable arguments: at most `max_entries` results and
    `max_bytes` bytes of arguments, least recently used out first."""

    def decorate(fn: F) -> F:
        store: OrderedDict[tuple[object, ...], object] = OrderedDict()
        held = 0
        largest = max_bytes // 16

        @wraps(fn)
        def cached(*args: object) -> object:
            nonlocal held
            try:
                value = store[args]
            except KeyError:
                pass
            else:
                store.move_to_end(args)
                return value
            value = fn(*args)
            size = _size(args)
            if size <= largest:
                store[args] = value
                held += size
                while len(store) > max_entries or held > max_bytes:
                    old, _ = store.popitem(last=False)
                    held -= _size(old)
            return value

        return cast(F, cached)

    return decorate
