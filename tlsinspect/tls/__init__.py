"""Pure TLS dissection: bytes in, records, handshake messages and events out. No I/O."""
