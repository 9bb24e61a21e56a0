"""tlsinspect.x509.cache.bounded_cache: bounded in entries and in bytes, least recent out first."""

from __future__ import annotations

from tlsinspect.x509.cache import bounded_cache


def _counting(max_entries: int, max_bytes: int):
    calls: list[bytes] = []

    @bounded_cache(max_entries, max_bytes)
    def length(der: bytes) -> int:
        calls.append(der)
        return len(der)

    return length, calls


def test_a_result_is_computed_once_while_kept():
    length, calls = _counting(4, 1 << 20)
    assert [length(b"a"), length(b"bb"), length(b"a")] == [1, 2, 1]
    assert calls == [b"a", b"bb"]


def test_past_its_entries_the_least_recently_used_leaves():
    length, calls = _counting(2, 1 << 20)
    length(b"a"), length(b"b"), length(b"a"), length(b"c")  # b is the least recently used
    calls.clear()
    length(b"a"), length(b"c"), length(b"b")
    assert calls == [b"b"]


def test_past_its_bytes_the_oldest_leave():
    length, calls = _counting(100, 1600)  # entries of at most 100 bytes are kept
    for i in range(20):
        length(bytes([i]) * 100)  # 2,000 bytes in all: the first ones leave
    calls.clear()
    length(bytes([19]) * 100), length(bytes([4]) * 100)  # 16 kept (4 to 19): hits
    assert calls == []
    length(bytes([3]) * 100)
    assert calls == [bytes([3]) * 100]


def test_an_entry_over_a_sixteenth_of_its_bytes_is_never_kept():
    length, calls = _counting(100, 1600)
    big = b"x" * 101
    assert length(big) == length(big) == 101
    assert calls == [big, big]


def test_bytes_inside_tuples_count():
    seen = []

    @bounded_cache(100, 1600)
    def chain(ders: tuple[bytes, ...], role: str) -> int:
        seen.append(role)
        return len(ders)

    chain((b"x" * 60, b"y" * 60), "server")  # 126 bytes: over 100, not kept
    chain((b"x" * 60, b"y" * 60), "server")
    chain((b"x" * 10,), "client")
    chain((b"x" * 10,), "client")
    assert seen == ["server", "server", "client"]
