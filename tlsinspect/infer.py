"""What a TLS 1.3 handshake was, seen without keys: from the lengths of its encrypted records.

Pure: `infer_handshake(view) -> Inference` takes the (sender, length) of the encrypted records
after the ServerHello and a few facts, and says what they must have held. It never guesses: a
`mutual` needs bytes that only a client Certificate and CertificateVerify can explain, and when
the records allow more than one reading the answer is `None` (undecided) with what was seen.

What the sizes rest on (RFC 8446):
- A protected record is its content, one byte of real content type, any zero padding (5.4) and
  the AEAD tag. The tag is known from the cipher suite; the padding is learned per connection
  and per direction from records whose content is known: each side's Finished (4 + hash length
  bytes) and the alerts (2 bytes). Where the padding cannot be learned it is taken to be none
  only for readings that cannot give `mutual`.
- The client's second flight is [EndOfEarlyData,] [EncryptedExtensions,] [Certificate,
  CertificateVerify,] Finished (4.4, 4.5; RFC 9001 and ALPS add a client EncryptedExtensions),
  in one record or several, possibly with the server's records in between. A client sends a
  Certificate only when asked (4.4.2): an empty one is 8 bytes; one holding a certificate is at
  least MIN_CERTIFICATE, and its CertificateVerify carries a signature of a size from a short
  list (VERIFY_SIZES). "Finished plus 10 bytes" is an EncryptedExtensions, never a certificate.
- A server that sends one message per record shows its CertificateRequest as a record of its own
  between EncryptedExtensions and Certificate; its absence there vetoes a `mutual` read from the
  client's side, and its presence vetoes a `one-way`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .model import CLIENT, SERVER

ALERT = 2  # an alert's content: level and description
EMPTY_CERTIFICATE = 8  # handshake header, empty context, empty certificate_list
END_OF_EARLY_DATA = 4  # a handshake header and no body
MIN_EXTENSIONS = 6  # EncryptedExtensions with no extension: header and a zero length
# A Certificate message holding one certificate: header 4, context 1, list 3, entry length 3,
# the DER, the entry's extensions 2. The smallest certificate a TLS stack sends is well over 128
# bytes (an Ed25519 key and signature alone are 32 + 64 bytes, with names, validity and algorithm
# identifiers around them).
MIN_CERTIFICATE = 4 + 1 + 3 + 3 + 128 + 2
# A CompressedCertificate (RFC 8879) of an empty Certificate: header 4, algorithm 2, lengths 3 + 3,
# the 4-byte body compressed (zlib 12 bytes, zstd 13, brotli fewer). A real chain with its
# CertificateVerify cannot be this small.
COMPRESSED_EMPTY = range(4 + 2 + 3 + 3 + 5, 4 + 2 + 3 + 3 + 52 + 1)
MAX_PADDING = 255  # more than a stack pads a handshake record in practice; a bound, not a rule
# A first record up to this much longer than Finished may be a padded Finished (a stack that pads
# pads a little: 16 bytes seen); a Certificate is longer, an EncryptedExtensions mostly shorter.
PADDED_FINISHED = 64
SCAN = 8  # the client's Finished is looked for in its first records after the ServerHello


def _verify_sizes() -> frozenset[int]:
    """Lengths of a CertificateVerify message: header 4, scheme 2, length 2, the signature.

    Ed25519 64 and Ed448 114 bytes; ECDSA a DER SEQUENCE of two integers (P-256 up to 72, P-384
    up to 104, P-521 up to 139, a few bytes fewer when an integer is short); RSA the modulus size.
    """
    sigs = {64, 114}
    for top in (72, 104, 139):
        sigs.update(range(top - 8, top + 1))
    sigs.update(bits // 8 for bits in (1024, 1536, 2048, 3072, 4096, 8192))
    return frozenset(8 + s for s in sigs)


VERIFY_SIZES = _verify_sizes()
MIN_VERIFY = min(VERIFY_SIZES)
MIN_AUTHENTICATION = MIN_CERTIFICATE + MIN_VERIFY  # Certificate and CertificateVerify together


@dataclass(frozen=True, slots=True)
class View:
    """What an observer without keys has of a TLS 1.3 handshake."""

    records: Sequence[tuple[str, int]]  # (sender, record length) after the ServerHello, in order
    hash_len: int  # of the cipher suite: Finished is 4 + hash_len bytes
    tag: int  # AEAD tag length
    early_data: bool  # the client sent 0-RTT records: an EndOfEarlyData may open its flight
    closed: bool  # the connection ended with a FIN or a reset
    # the client offered ALPS (application_settings): it may send an EncryptedExtensions
    extensions: bool = True


@dataclass(frozen=True, slots=True)
class Inference:
    """What the record sizes show. `verdict` is None when they do not decide."""

    verdict: str | None  # "mutual", "one-way", "cert-requested-not-sent", "failed" or None
    evidence: str
    cert_requested: bool | None
    client_certificate: bool | None  # a Certificate holding a certificate was sent
    client_verify: bool | None
    flight_end: int  # index in `records` of the client's Finished (-1 if not found)
    client_padding: int | None
    settled: bool = False  # later records cannot change it (the server's answer is known)
    # the server answered the client's flight with alert-sized records only, then the end
    refused: bool = False
    # for a one-way reading: what the client's flight showed, without the conclusion drawn
    # from it, for a reason that goes on to what came after the handshake
    seen: str = ""


@dataclass(frozen=True, slots=True)
class _Flight:
    end: int  # index of the client's Finished in the records
    padding: int  # per record, learned
    how: str  # how the Finished was found
    contents: tuple[int, ...]  # content lengths of the client's records before its Finished
    sizes: tuple[int, ...]  # their record lengths, the Finished's included


def _overhead(v: View) -> int:
    return 1 + v.tag


def _finished(v: View) -> int:
    return 4 + v.hash_len


def server_padding(v: View) -> int | None:
    """The server's padding per record, learned from its Finished in its first flight (the
    records it sent before the client's first): None when that flight is one record, or no
    record in it can be its Finished."""
    flight: list[int] = []
    for role, n in v.records:
        if role == CLIENT:
            break
        flight.append(n)
    target = _finished(v) + _overhead(v)
    if target in flight:
        return 0
    if len(flight) >= 2:
        pad = flight[-1] - target
        if 0 < pad <= MAX_PADDING:
            return pad
    return None


def server_asked(v: View, pad: int | None = -1) -> bool | None:
    """Whether the server's first flight shows a CertificateRequest, where the server sends one
    message per record: [EncryptedExtensions, CertificateRequest, Certificate, CertificateVerify,
    Finished] or the same without the request. None when its records do not show it. `pad`: the
    server's padding when already learned (`server_padding`)."""
    if pad == -1:
        pad = server_padding(v)
    if pad is None:
        return None
    flight: list[int] = []
    for role, n in v.records:
        if role == CLIENT:
            break
        flight.append(n - _overhead(v) - pad)
    fin = _finished(v)
    if fin not in flight:
        return None
    body = flight[: flight.index(fin)]
    if len(body) not in (3, 4) or body[-1] not in VERIFY_SIZES:
        return None
    if body[0] < MIN_EXTENSIONS or body[-2] < MIN_CERTIFICATE:
        return None
    if len(body) == 3:
        return False
    # a CertificateRequest: header, context, extensions with at least signature_algorithms
    return True if body[1] >= 4 + 1 + 2 + 8 else None


def _client_records(v: View) -> list[tuple[int, int]]:
    """(index, length) of the client's records."""
    return [(i, n) for i, (role, n) in enumerate(v.records) if role == CLIENT]


AMBIGUOUS = _Flight(-1, 0, "", (), ())


def _flight(v: View, s_pad: int | None) -> _Flight | None:
    """Where the client's second flight ends and how much each of its records is padded."""
    over, fin = _overhead(v), _finished(v)
    client = _client_records(v)
    head = client[:SCAN]
    for k, (i, n) in enumerate(head):
        if n - over == fin:
            before = tuple(x - over for _, x in head[:k])
            if before and fin < before[0] <= fin + PADDED_FINISHED:
                # the first record could itself be a padded Finished, and this record later
                # data of the same size: two readings
                return AMBIGUOUS
            return _Flight(i, 0, "its size", before, tuple(x for _, x in head[: k + 1]))
    # padded records: the Finished is the first record whose padding other records confirm
    later = {n for _, n in client}
    for k, (i, n) in enumerate(head):
        pad = n - over - fin
        if not 0 < pad <= MAX_PADDING:
            continue
        before = tuple(x - over - pad for _, x in head[:k])
        if any(c < END_OF_EARLY_DATA for c in before):
            continue
        if ALERT + over + pad in later:
            how = f"padded by {pad} bytes, as the client's alert is"
        elif s_pad == pad:
            how = f"padded by {pad} bytes, as the server's Finished is"
        elif before and all(c in (END_OF_EARLY_DATA, EMPTY_CERTIFICATE) for c in before):
            how = f"padded by {pad} bytes, as its other records are"
        elif len(before) >= 2 and before[-1] in VERIFY_SIZES and before[-2] >= MIN_CERTIFICATE:
            how = f"padded by {pad} bytes, as its CertificateVerify is"
        else:
            continue
        return _Flight(i, pad, how, before, tuple(x for _, x in head[: k + 1]))
    return None


def _padding_bound(v: View, after: int) -> int | None:
    """The most a client pads a record, from its records after index `after` (each holds at
    least nothing): None when it sent none."""
    over = _overhead(v)
    rest = [n - over for i, n in _client_records(v) if i > after]
    return max(0, min(rest)) if rest else None


def _is_extensions(c: int) -> bool:
    """A client EncryptedExtensions: header 4, list length 2, extensions of 4 bytes or more."""
    return c == MIN_EXTENSIONS or c >= MIN_EXTENSIONS + 4


def _read_plain(items: Sequence[int], extensions: bool) -> str | None:
    """What records before the Finished held, none of them an EndOfEarlyData. `extensions`:
    the client may send an EncryptedExtensions (it offered ALPS)."""
    if not items:
        return "none"
    total = sum(items)
    if total >= MIN_AUTHENTICATION:
        # the last record before Finished holds the CertificateVerify, alone or after the
        # Certificate; the records before it hold the Certificate (and EncryptedExtensions)
        last = items[-1]
        if last in VERIFY_SIZES and total - last >= MIN_CERTIFICATE:
            return "auth"
        if last >= MIN_AUTHENTICATION:
            return "auth"  # Certificate and CertificateVerify in one record
        return None

    def ee(c: int) -> bool:
        return extensions and _is_extensions(c)

    # an EncryptedExtensions, then an empty Certificate (plain or compressed): in one record or
    # two; or an EncryptedExtensions alone
    def empty_cert(c: int) -> bool:
        return c == EMPTY_CERTIFICATE or c in COMPRESSED_EMPTY

    empty = (
        len(items) == 1
        and (
            empty_cert(items[0])
            or any(ee(items[0] - c) and empty_cert(c) for c in range(1, items[0]))
        )
    ) or (len(items) == 2 and ee(items[0]) and empty_cert(items[1]))
    none = len(items) == 1 and ee(items[0])
    if empty == none:
        return None  # both readings fit (or neither): the sizes do not tell
    return "empty" if empty else "none"


def _read_extras(contents: Sequence[int], early: bool, extensions: bool) -> str | None:
    """What the client's records before its Finished held: "none" (no Certificate), "empty"
    (an empty Certificate), "auth" (Certificate and CertificateVerify), None if unclear.

    Each record holds whole messages in their order: EndOfEarlyData (after 0-RTT data the server
    accepted), EncryptedExtensions (only after the client offered ALPS), Certificate (maybe
    compressed, RFC 8879), CertificateVerify; messages may share a record.
    """
    items = list(contents)
    if not early or not items:
        return _read_plain(items, extensions)
    if items[0] == END_OF_EARLY_DATA:
        return _read_plain(items[1:], extensions)
    # the server refused the early data: no EndOfEarlyData
    readings = {_read_plain(items, extensions)}
    if items[0] > END_OF_EARLY_DATA:  # or it shares the first record
        readings.add(_read_plain([items[0] - END_OF_EARLY_DATA, *items[1:]], extensions))
    readings.discard(None)
    return readings.pop() if len(readings) == 1 else None


def infer_handshake(v: View) -> Inference:
    over, fin = _overhead(v), _finished(v)
    s_pad = server_padding(v)
    asked = server_asked(v, s_pad)
    flight = _flight(v, s_pad)
    client = _client_records(v)
    if flight is AMBIGUOUS:
        first = client[0][1]
        return _undecided(
            f"client's first record after the ServerHello is {first:,} bytes, a padded Finished "
            f"or an EncryptedExtensions; a later one has the size of an unpadded Finished "
            f"({fin + over})",
            asked,
            -1,
        )
    if flight is None:
        return _coalesced(v, client, s_pad, asked)
    shown = " + ".join(f"{n:,}" for n in flight.sizes)
    evidence = f"client's second flight {shown} bytes; Finished alone would be {fin + over}" + (
        f" (records {flight.how})" if flight.padding else ""
    )
    read = _read_extras(flight.contents, v.early_data, v.extensions)
    extra = sum(flight.contents)
    return _conclude(
        v, read, extra, evidence, asked, s_pad, flight.end, flight.padding, flight.contents
    )


def _coalesced(
    v: View, client: list[tuple[int, int]], s_pad: int | None, asked: bool | None
) -> Inference:
    """No record of the client has the size of Finished: its whole flight may be one record."""
    over, fin = _overhead(v), _finished(v)
    if not client:
        return _undecided("the client's second flight is not in the capture", asked, -1)
    i, n = client[0]
    extra = n - over - fin
    bound = _padding_bound(v, i)
    evidence = (
        f"client's second flight {n:,} bytes in one record; Finished alone would be {fin + over}"
    )
    if extra < 0:
        return _undecided(evidence + ": too short for a Finished", asked, -1)
    read = _read_extras((extra,) if extra else (), v.early_data, v.extensions)
    refused = _server_answer(v, s_pad)[0] == "refused"
    if read == "auth" and not refused:
        # padding could explain bytes only up to what the client's smallest later record holds
        if bound is None or extra - bound < MIN_AUTHENTICATION:
            more = (
                "nothing later from the client bounds its padding"
                if bound is None
                else f"its later records allow up to {bound} bytes of padding"
            )
            return _undecided(f"{evidence}, plus {extra:,} bytes; {more}", asked, i)
    elif (
        read in ("none", "empty")
        and bound is not None
        and 0 < extra <= bound
        and not (asked is not None and extra < MIN_AUTHENTICATION)
    ):
        return _undecided(
            f"{evidence}, plus {extra:,} bytes, which padding could explain", asked, i
        )
    return _conclude(v, read, extra, evidence, asked, s_pad, i, 0, (extra,))


def _undecided(evidence: str, asked: bool | None, end: int) -> Inference:
    return Inference(None, evidence, asked, None, None, end, None, False)


def _server_answer(v: View, s_pad: int | None) -> tuple[str, list[int]]:
    """How the server answered the client's flight: "refused" (only alerts, then the connection
    ended), "went_on" (a record that is not an alert), or "unknown".

    With the server's padding known an alert has one size. Without it (its first flight was one
    record) a record of any size up to an alert plus MAX_PADDING may be an alert; records of
    two sizes cannot all be alerts (a stack pads its alerts alike)."""
    over = _overhead(v)
    first_client = next(
        (i for i, (role, _) in enumerate(v.records) if role == CLIENT), len(v.records)
    )
    reply = [n for i, (role, n) in enumerate(v.records) if role == SERVER and i > first_client]
    alert = ALERT + over + (s_pad or 0)
    if s_pad is not None or all(n == alert for n in reply):
        if any(n != alert for n in reply):
            return "went_on", reply
        return ("refused" if reply and v.closed else "unknown"), reply
    if any(n > alert + MAX_PADDING for n in reply) or len(set(reply)) > 1:
        return "went_on", reply
    return "unknown", reply


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What every conclusion of `_conclude` carries: the evidence text, the client's padding and
    where the handshake ended, and how the server answered the client's flight."""

    plus: str
    end: int
    c_pad: int
    answer: str
    reply: list[int]

    def undecided(self, why: str, requested: bool | None) -> Inference:
        return Inference(
            None, f"{self.plus}{why}", requested, None, None, self.end, self.c_pad, False
        )

    def decided(
        self, verdict: str, text: str, facts: tuple[bool, bool, bool], seen: str = ""
    ) -> Inference:
        if self.answer == "refused":
            n = len(self.reply)
            text += (
                f"; the server answered with {n} record{'s' if n > 1 else ''} of {self.reply[0]} "
                "bytes, the size of an alert, and the connection ended"
            )
            if verdict != "cert-requested-not-sent":
                verdict = "failed"
        return Inference(
            verdict,
            text,
            *facts,
            self.end,
            self.c_pad,
            self.answer != "unknown",
            self.answer == "refused",
            seen,
        )


def _empty_certificate(v: View, extra: int, contents: Sequence[int]) -> str:
    """What the client's flight held, once read as an empty Certificate."""
    if extra == EMPTY_CERTIFICATE:
        return "an empty Certificate"
    if any(c in COMPRESSED_EMPTY for c in contents) and not v.extensions:
        return "an empty Certificate sent compressed (RFC 8879 CompressedCertificate)"
    return "an empty Certificate, with an EncryptedExtensions, EndOfEarlyData or padding"


def _conclude(
    v: View,
    read: str | None,
    extra: int,
    evidence: str,
    asked: bool | None,
    s_pad: int | None,
    end: int,
    c_pad: int,
    contents: Sequence[int] = (),
) -> Inference:
    answer, reply = _server_answer(v, s_pad)
    plus = f"{evidence}, plus {extra:,} bytes"
    out = _Outcome(plus, end, c_pad, answer, reply)
    by_server = ""
    if read is None and asked is not None and extra < MIN_AUTHENTICATION:
        # too few bytes for a certificate: the server's own flight says whether the client had to
        # answer with an (empty) Certificate; the rest is padding or extensions
        read = "empty" if asked else "none"
        by_server = (
            "; the server's records show a CertificateRequest, so an empty Certificate"
            if asked
            else "; the server's records show no CertificateRequest, so padding"
        )
    if read is None:
        return out.undecided(
            ", which the sizes of the messages allowed there do not explain alone", asked
        )
    if read in ("auth", "empty") and asked is False:
        return out.undecided(", yet the server's records show no CertificateRequest", None)
    if read == "auth":
        if answer == "unknown":
            return out.undecided(
                ": a client Certificate and CertificateVerify, but the server's answer "
                f"({', '.join(map(str, reply)) or 'none'}) may be alerts refusing them",
                True,
            )
        return out.decided(
            "mutual", f"{plus}: a client Certificate and CertificateVerify", (True, True, True)
        )
    if read == "empty":
        what = _empty_certificate(v, extra, contents)
        return out.decided(
            "cert-requested-not-sent", f"{plus}: {what}{by_server}", (True, False, False)
        )
    # no Certificate at all: the server did not ask (RFC 8446 4.4.2 obliges an answer)
    if asked is True and any(c in COMPRESSED_EMPTY for c in contents):
        # the server asked, so the record is the answer: an empty list, compressed
        return out.decided(
            "cert-requested-not-sent",
            f"{plus}: an empty Certificate sent compressed (RFC 8879 CompressedCertificate), "
            "as the server asked for one",
            (True, False, False),
        )
    if asked is True:
        return out.undecided(
            ": no client Certificate, yet the server's records show a CertificateRequest", True
        )
    text = (
        f"{evidence}: no client Certificate, so no CertificateRequest"
        if extra == 0
        else f"{plus}: padding, an EncryptedExtensions or EndOfEarlyData, no client Certificate"
        f"{by_server or ', so no CertificateRequest'}"
    )
    return out.decided("one-way", text, (False, False, False), evidence if extra == 0 else text)
