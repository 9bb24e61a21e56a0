"""A filter the consumer pushes down to a capture reader, as a BPF filter is pushed to a socket.

The reader still never looks inside a packet on its own: it compares bytes at the offsets the
filter gives with a table the consumer keeps, and does not yield a record that matches. The
pipeline uses it to skip, inside the reader's loop, the packets of TCP flows whose handshake is
decided (most packets of a capture: bulk data), with one dict lookup and no tuple, slice of the
packet or generator step for each (`engines.builtin.Analyzer.run` installs it; see there).

A record is skipped when all hold:
- its link type is `linktype`;
- it has more than `flags_at` captured bytes;
- `table.get(data[key_start:key_end]) is value`;
- `data[flags_at] & flags_mask` is 0, and `data[more_at] & more_mask` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class SkipFilter:
    linktype: int
    key_start: int
    key_end: int
    table: dict[bytes, object]
    value: object
    flags_at: int
    flags_mask: int
    more_at: int  # a second byte that must have none of more_mask's bits (below flags_at)
    more_mask: int
    skipped: int = 0  # records not yielded, counted by the reader
