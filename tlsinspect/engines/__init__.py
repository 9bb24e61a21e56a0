"""The two engines, peers that read the wire differently and share everything after it.

`builtin`: tlsinspect's own dissector (raw frames, its TCP reassembly and TLS layers; the hot
loop). `tshark`: Wireshark's dissection read through pyshark, turned into the same TLS events.
Both feed `session.SessionBuilder` and log their sessions through `lifecycle`, which decides when
a session is logged and builds its `record.SessionRecord`. Neither imports a report.
"""
