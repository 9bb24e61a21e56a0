"""tlsinspect.x509: certificate facts, name matching and chain checks, on certificates built
with `cryptography` by tests/certs.py (the recorded ones are covered by
tests/e2e/test_certificates.py)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest
from certs import T0, Made, make
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from tlsinspect.x509 import (
    Anchors,
    ChainReport,
    Check,
    cert_info,
    check_chain,
    dns_name_matches,
    match_server_name,
    name_from_der,
    read_tbs,
    rfc2253_from_der,
    same_name,
    signature_problem,
    validate,
)

CLIENT, SERVER = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


CN_OID, O_OID, C_OID = (
    bytes.fromhex("0603550403"),
    bytes.fromhex("060355040a"),
    bytes.fromhex("0603550406"),
)


def printable_name(*attrs: tuple[bytes, str]) -> bytes:
    """A DER Name whose values are PrintableStrings (cryptography writes UTF8Strings)."""
    rdns = b"".join(
        _tlv(0x31, _tlv(0x30, oid + _tlv(0x13, value.encode("ascii")))) for oid, value in attrs
    )
    return _tlv(0x30, rdns)


def sha1_resigned(made: Made, issuer: Made) -> Made:
    """The certificate signed with sha1WithRSAEncryption (cryptography no longer makes those)."""
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha1_rsa = bytes.fromhex("06092a864886f70d010105")
    tbs = made.cert.tbs_certificate_bytes.replace(sha256_rsa, sha1_rsa)
    sig = issuer.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    der = _tlv(0x30, tbs + _tlv(0x30, sha1_rsa + b"\x05\x00") + _tlv(0x03, b"\x00" + sig))
    return Made(x509.load_der_x509_certificate(der), made.key)


@pytest.fixture(scope="module")
def pki() -> dict[str, Made]:
    root = make("Unit Root CA", key="rsa", ca=True, ku="ca", days=3650)
    inter = make("Unit Intermediate CA", root, ca=True, path_length=0, ku="ca", days=3000)
    return {
        "root": root,
        "inter": inter,
        "client": make(
            "client-a",
            inter,
            eku=[CLIENT],
            ku="sig",
            san=[
                x509.UniformResourceIdentifier("spiffe://unit.test/a"),
                x509.RFC822Name("a@unit.test"),
            ],
        ),
        "server": make(
            "www.unit.test",
            inter,
            key="rsa",
            eku=[SERVER],
            ku="enc",
            san=[
                x509.DNSName("www.unit.test"),
                x509.DNSName("*.api.unit.test"),
                x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
            ],
        ),
        "rogue": make("Rogue CA", key="p384", ca=True, ku="ca", days=3650),
    }


def ders(*made: Made) -> tuple[bytes, ...]:
    return tuple(m.der for m in made)


def detail_of(report: ChainReport, name: str, result: str | None = None) -> str:
    found = report.find(name, result)
    assert found is not None, (name, result, report.checks())
    return found.detail


def result_of(report: ChainReport, name: str) -> str:
    found = report.find(name)
    assert found is not None, (name, report.checks())
    return found.result


def results(report_checks: Sequence[Check]) -> dict[str, str]:
    return {c.name: c.result for c in report_checks}


# --------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("www.example.com", "www.example.com", True),
        ("WWW.Example.COM", "www.example.com.", True),
        ("www.example.com", "example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "A.EXAMPLE.COM", True),
        ("*.example.com", "example.com", False),  # the wildcard stands for one label
        ("*.example.com", "a.b.example.com", False),  # ... and only one
        ("*.example.com", ".example.com", False),
        ("w*.example.com", "www.example.com", False),  # partial wildcards refused (RFC 9525)
        ("*w.example.com", "www.example.com", False),
        ("www.*.com", "www.example.com", False),  # only the leftmost label
        ("*.*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),  # two labels after the wildcard, as OpenSSL asks
        ("*", "localhost", False),
        ("", "example.com", False),
        ("xn--bcher-kva.example", "XN--BCHER-KVA.example", True),  # A-labels compare as ASCII
    ],
)
def test_dns_name_matching_follows_rfc_6125(pattern, host, expected):
    assert dns_name_matches(pattern, host) is expected


def test_server_names_match_dns_and_ip_sans(pki):
    info = cert_info(pki["server"].der)
    assert match_server_name(info, "www.unit.test").matched == "DNS:www.unit.test"
    assert match_server_name(info, "v1.api.unit.test").matched == "DNS:*.api.unit.test"
    assert match_server_name(info, "api.unit.test").matched is None
    assert match_server_name(info, "192.0.2.7").matched == "IP:192.0.2.7"
    assert match_server_name(info, "2001:db8:0:0:0:0:0:7").matched == "IP:2001:db8::7"
    assert match_server_name(info, "192.0.2.8").matched is None
    miss = match_server_name(info, "other.test")
    assert miss.matched is None and "DNS:www.unit.test" in miss.presented


def test_common_name_counts_only_without_sans(pki):
    bare = make("cn-only.unit.test", pki["inter"], eku=[SERVER])
    assert match_server_name(cert_info(bare.der), "cn-only.unit.test").matched == (
        "CN:cn-only.unit.test"
    )
    # a URI SAN is an identifier too: the CN is then ignored (RFC 6125 6.4.4)
    with_uri = make(
        "cn.unit.test", pki["inter"], san=[x509.UniformResourceIdentifier("spiffe://x/y")]
    )
    assert match_server_name(cert_info(with_uri.der), "cn.unit.test").matched is None
    # an IP in the CN is never matched as an IP
    ip_cn = make("192.0.2.9", pki["inter"])
    assert match_server_name(cert_info(ip_cn.der), "192.0.2.9").matched is None


def test_names_compare_as_der_or_after_normalisation():
    a = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test  Root CA")]).public_bytes()
    b = printable_name((CN_OID, "test root ca"))
    assert a != b and same_name(a, b)
    assert not same_name(
        a, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other")]).public_bytes()
    )
    assert name_from_der(a) == "CN=Test  Root CA"
    assert name_from_der(b"\x31\x00").startswith("<unreadable name")


# --------------------------------------------------------------------------------------------
# One certificate


def test_cert_info_reads_every_field(pki):
    info = cert_info(pki["client"].der)
    assert info.subject == "C=US, O=Example Unit Tests, CN=client-a"
    assert info.issuer == "C=US, O=Example Unit Tests, CN=Unit Intermediate CA"
    assert (info.subject_cn, info.issuer_cn, info.serial) == (
        "client-a",
        "Unit Intermediate CA",
        "1234ABCD",
    )
    assert info.san == ("URI:spiffe://unit.test/a", "email:a@unit.test")
    assert (info.key_type, info.key_bits, info.key_curve) == ("EC", 256, "secp256r1")
    assert info.signature_algorithm == "ecdsa-with-SHA256"  # the intermediate's key is EC
    assert info.signature_hash == "sha256"
    assert info.is_ca is False and info.key_usage == ("digitalSignature",)
    assert info.extended_key_usage == ("clientAuth",)
    assert info.not_before == T0 - timedelta(days=10) and info.not_before.tzinfo is not None
    assert info.error is None and info.version == 3
    d = info.to_dict()
    assert d["san"] == list(info.san) and d["key_curve"] == "secp256r1" and d["is_ca"] is False
    server = cert_info(pki["server"].der)
    assert server.san[2:] == ("IP:192.0.2.7", "IP:2001:db8::7")
    assert (server.key_type, server.key_bits, server.key) == ("RSA", 2048, "RSA 2048")
    root = cert_info(pki["root"].der)
    assert root.self_signed and root.is_ca and root.key_usage == ("keyCertSign", "cRLSign")
    assert cert_info(pki["inter"].der).path_length == 0
    assert cert_info(pki["inter"].der).signature_algorithm == "sha256WithRSAEncryption"
    assert cert_info(pki["rogue"].der).key == "EC secp384r1"


def test_cert_info_other_keys_and_no_extensions():
    ed = make("ed-leaf", None, key="ed25519", ca=None)
    info = cert_info(ed.der)
    assert (info.key_type, info.signature_algorithm, info.signature_hash) == (
        "Ed25519",
        "ED25519",
        None,
    )
    assert info.is_ca is None and info.key_usage is None and info.extended_key_usage is None


def test_cert_info_is_cached():
    der = make("cached", None).der
    assert cert_info(der) is cert_info(bytes(der))


def _version_4(der: bytes) -> bytes:
    """The certificate with its version field set to 4 (value 3), which cryptography refuses."""
    marker = bytes.fromhex("a003020102")
    assert der.count(marker) == 1
    return der.replace(marker, bytes.fromhex("a003020103"))


@pytest.mark.parametrize(
    "serial, printed",
    [
        ("1", "01"),
        ("0x075DA21171A41241766CC01CA59852B1", "075DA21171A41241766CC01CA59852B1"),
        ("0x99FAA8037A4EB2FAEF84EB5E55D5B8C8", "99FAA8037A4EB2FAEF84EB5E55D5B8C8"),  # DER 00 99..
        ("0x80", "80"),  # DER 00 80
        ("0x0100", "0100"),
        ("0", "00"),
        ("-0x1234", "-1234"),  # not allowed (RFC 5280 4.1.2.2), issued all the same
        ("-1", "-01"),
    ],
)
def test_serial_is_what_openssl_prints(tmp_path, serial, printed):
    """`openssl req -set_serial` makes the certificate, `openssl x509 -serial` is the oracle;
    both readers (cryptography's and the one by hand) give its text."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    der = tmp_path / "cert.der"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-keyout", str(tmp_path / "key.pem"), "-subj", "/CN=serial", "-days", "1"]
        + ["-set_serial", serial, "-outform", "DER", "-out", str(der)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    r = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(der), "-serial", "-noout"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert r.stdout.strip() == f"serial={printed}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a serial cryptography frowns upon is a note
        assert cert_info(der.read_bytes()).serial == printed
    assert read_tbs(der.read_bytes()).serial == printed


def test_unparsable_certificate_shows_what_could_be_read(pki):
    broken = _version_4(pki["client"].der)
    info = cert_info(broken)
    assert info.error and info.error.startswith("not a readable certificate")
    assert (
        "read by hand: version, serial, signature algorithm, issuer, validity, subject"
        in info.error
    )
    assert info.subject == "C=US, O=Example Unit Tests, CN=client-a"
    assert info.issuer_cn == "Unit Intermediate CA" and info.serial == "1234ABCD"
    assert info.not_after == T0 + timedelta(days=190) and info.key_type == "EC"
    assert info.version == 4 and info.signature_algorithm == "ecdsa-with-SHA256"
    # in a chain: the parse check fails, the rest goes on
    report = check_chain((broken, pki["inter"].der), "client", T0)
    assert "parse" in report.failed


@pytest.mark.parametrize("cut", [0, 1, 3, 10, 40, 200, -1])
def test_truncated_der_never_raises(pki, cut):
    der = pki["server"].der
    short = der[:cut] if cut >= 0 else der[:-1]
    info = cert_info(short)
    assert info.error is not None
    raw = read_tbs(short)
    assert raw.error is not None
    check_chain((short, pki["inter"].der), "server", T0, sni="www.unit.test")


def test_malformed_extension_is_reported_not_fatal(pki):
    bad = make(
        "bad-san",
        pki["inter"],
        ca=None,
        key_ids=False,
        serial=7,
        start=T0 - timedelta(days=1),
        days=2,
        extra=[
            (
                x509.UnrecognizedExtension(
                    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x01\x02"
                ),
                False,
            )
        ],
    )
    info = cert_info(bad.der)
    assert info.subject_cn == "bad-san" and info.san == ()
    assert info.error and info.error.startswith("partly unreadable: SubjectAlternativeName")


# --------------------------------------------------------------------------------------------
# Chain checks


def test_a_good_chain_passes_every_check(pki):
    client = check_chain(ders(pki["client"], pki["inter"]), "client", T0)
    assert client.result == "pass" and client.failed == [] and client.warnings == []
    assert results(client.certs[0]) == {"signature": "pass", "validity": "pass", "purpose": "pass"}
    assert results(client.certs[1]) == {"signature": "info", "validity": "pass", "ca": "pass"}
    assert results(client.chain) == {"order": "pass", "path": "pass"}
    server = check_chain(
        ders(pki["server"], pki["inter"], pki["root"]), "server", T0, sni="www.unit.test"
    )
    assert server.result == "pass", server.checks()
    assert "ends at the self-signed root [2]" in detail_of(server, "path")


def test_validity_is_judged_at_the_capture_time_given(pki):
    chain = ders(pki["client"], pki["inter"])
    assert check_chain(chain, "client", T0).failed == []
    late = check_chain(chain, "client", T0 + timedelta(days=400))
    assert late.failed == ["validity"]
    assert "expired on 2026-12-08" in detail_of(late, "validity", "fail")
    early = check_chain(chain, "client", T0 - timedelta(days=30))
    assert "not yet valid" in detail_of(early, "validity", "fail")


def test_a_capture_time_that_is_no_date_leaves_validity_not_checked(pki):
    """A damaged packet timestamp gives no capture time: validity and trust are not judged
    (neither passed nor failed), the other checks are as at any time."""
    chain = ders(pki["client"], pki["inter"])
    report = check_chain(chain, "client", None, anchors=Anchors(ders(pki["root"])))
    assert report.failed == []
    for check in ("validity", "ca_bundle"):
        got = report.find(check)
        assert got is not None and got.result == "info"
        assert got.detail.startswith("not checked: the capture time is not a date")
    assert report.find("signature", "pass") is not None


def test_a_broken_signature_names_the_link(pki):
    # claims the intermediate as issuer, but is signed by the rogue key
    forged = make("forged", issuer_name=pki["inter"].name, signer=pki["rogue"], eku=[CLIENT])
    report = check_chain(ders(forged, pki["inter"]), "client", T0)
    assert report.failed == ["signature", "path"]
    detail = detail_of(report, "signature", "fail")
    assert (
        "[1] Unit Intermediate CA has the issuer's name but the signature does not verify" in detail
    )


def test_wrong_order_warns_and_the_path_is_still_found(pki):
    report = check_chain(ders(pki["client"], pki["root"], pki["inter"]), "client", T0)
    assert report.failed == [] and report.warnings == ["order"]
    assert detail_of(report, "path").startswith("[0] -> [2] -> [1] ends at the self-signed root")
    assert "(out of order)" in report.certs[0][0].detail


def test_unrelated_extra_certificate_is_not_on_the_path(pki):
    report = check_chain(ders(pki["client"], pki["inter"], pki["rogue"]), "client", T0)
    assert report.warnings == ["path"]
    assert "not part of the path: [2] Rogue CA" in detail_of(report, "path")


def test_issuers_must_be_cas_within_their_path_length(pki):
    not_ca = make("not-a-ca", pki["inter"], eku=[CLIENT])
    leaf = make("leaf-under-leaf", not_ca, eku=[CLIENT])
    report = check_chain(ders(leaf, not_ca, pki["inter"]), "client", T0)
    assert "ca" in report.failed
    assert "not a CA (basicConstraints CA:FALSE)" in detail_of(report, "ca", "fail")
    # the intermediate allows no CA below it (pathlen 0)
    sub = make("Sub CA", pki["inter"], ca=True, ku="ca")
    leaf2 = make("leaf-under-sub", sub, eku=[CLIENT])
    report = check_chain(ders(leaf2, sub, pki["inter"]), "client", T0)
    assert "pathLenConstraint 0" in detail_of(report, "ca", "fail")
    no_bc = make("No BC CA", pki["inter"], ca=None)
    leaf3 = make("leaf-under-nobc", no_bc)
    report = check_chain(ders(leaf3, no_bc), "client", T0)
    assert "no basicConstraints" in detail_of(report, "ca", "fail")


@pytest.mark.parametrize(
    ("role", "eku", "ku", "result"),
    [
        ("client", [CLIENT], "sig", "pass"),
        ("client", None, None, "pass"),  # no EKU: any purpose
        ("client", [ANY_EKU], "sig", "pass"),
        ("client", [SERVER], "sig", "fail"),
        ("client", [CLIENT], "enc", "fail"),  # a client signs: digitalSignature
        ("server", [SERVER], "enc", "pass"),  # RSA key exchange: keyEncipherment will do
        ("server", [CLIENT], "sig", "fail"),
        ("server", [SERVER, CLIENT], "sig", "pass"),
    ],
)
def test_purpose_of_the_leaf(pki, role, eku, ku, result):
    arcs = "+".join(o.dotted_string.rsplit(".", 1)[1] for o in eku or ())
    leaf = make(
        f"purpose-{role}-{arcs or 'none'}-{ku}",
        pki["inter"],
        eku=eku,
        ku=ku,
        san=[x509.DNSName("p.unit.test")],
    )
    report = check_chain(ders(leaf, pki["inter"]), role, T0, sni="p.unit.test")
    assert result_of(report, "purpose") == result


def test_server_name_check_uses_the_sni_else_the_server_address(pki):
    chain = ders(pki["server"], pki["inter"])
    assert check_chain(chain, "server", T0, sni="x.api.unit.test").failed == []
    miss = check_chain(chain, "server", T0, sni="www.unit.test.evil")
    assert miss.failed == ["name"]
    assert "matches none of the certificate's names (DNS:www.unit.test" in detail_of(miss, "name")
    by_ip = check_chain(chain, "server", T0, server_ip="192.0.2.7")
    assert detail_of(by_ip, "name") == "no SNI; the server address 192.0.2.7 matches IP:192.0.2.7"
    assert check_chain(chain, "server", T0, server_ip="198.51.100.1").failed == ["name"]
    assert result_of(check_chain(chain, "server", T0), "name") == "info"
    # the client's leaf is never compared with a name
    assert (
        check_chain(ders(pki["client"], pki["inter"]), "client", T0, sni="zzz").find("name") is None
    )


def test_weak_material_is_flagged_not_failed(pki):
    weak = sha1_resigned(make("weak-leaf", pki["root"], key="rsa1024", eku=[CLIENT]), pki["root"])
    info = cert_info(weak.der)
    assert (info.key_bits, info.signature_algorithm) == (1024, "sha1WithRSAEncryption")
    report = check_chain(ders(weak, pki["root"]), "client", T0)
    assert report.failed == [] and report.warnings == ["key_strength", "signature_hash"]
    assert result_of(report, "signature") == "pass"  # SHA-1, verified by hand
    assert signature_problem(weak.der, pki["root"].der) is None
    assert signature_problem(weak.der, pki["rogue"].der) is not None


def test_long_server_leaves_are_flagged_by_issue_date(pki):
    def lifetime(start: datetime, days: int, role: str = "server") -> str | None:
        leaf = make(
            f"life-{start:%Y}-{days}-{role}",
            pki["inter"],
            start=start,
            days=days,
            eku=[SERVER, CLIENT],
        )
        c = check_chain(ders(leaf, pki["inter"]), role, start + timedelta(days=1)).find("lifetime")
        return None if c is None else c.result

    assert lifetime(datetime(2025, 1, 1, tzinfo=timezone.utc), 398) is None
    assert lifetime(datetime(2025, 1, 1, tzinfo=timezone.utc), 400) == "warn"
    assert lifetime(datetime(2025, 1, 1, tzinfo=timezone.utc), 400, "client") is None
    assert lifetime(datetime(2019, 1, 1, tzinfo=timezone.utc), 800) is None  # 825 days then
    assert lifetime(datetime(2019, 1, 1, tzinfo=timezone.utc), 900) == "warn"
    assert lifetime(datetime(2017, 1, 1, tzinfo=timezone.utc), 3000) is None


def test_client_chain_against_the_servers_ca_list(pki):
    chain = ders(pki["client"], pki["inter"])
    root_name = pki["root"].name.public_bytes()
    inter_name = pki["inter"].name.public_bytes()
    rogue_name = pki["rogue"].name.public_bytes()
    assert result_of(check_chain(chain, "client", T0, ca_names=[root_name]), "ca_listed") == "pass"
    assert result_of(check_chain(chain, "client", T0, ca_names=[inter_name]), "ca_listed") == "pass"
    # the leaf alone still names its issuer, the intermediate
    assert check_chain(chain[:1], "client", T0, ca_names=[inter_name]).failed == []
    miss = check_chain(chain[:1], "client", T0, ca_names=[root_name, rogue_name])
    assert miss.failed == ["ca_listed"]
    assert detail_of(miss, "ca_listed") == (
        "client chain issued by 'Unit Intermediate CA', server asked for 'Unit Root CA', 'Rogue CA'"
    )
    # an empty list asks for nothing: no check
    assert check_chain(chain, "client", T0, ca_names=[]).find("ca_listed") is None
    # the same name with another string type still matches
    printable = printable_name(
        (C_OID, "US"), (O_OID, "Example Unit Tests"), (CN_OID, "unit root ca")
    )
    listed = check_chain(chain, "client", T0, ca_names=[printable]).find("ca_listed")
    assert listed.result == "pass" and "encoded differently" in listed.detail


def test_validation_against_a_ca_bundle(pki):
    bundle = Anchors(ders(pki["root"]))
    chain = ders(pki["client"], pki["inter"])
    ok = validate(chain, "client", T0, bundle)
    assert ok.result == "pass" and ok.detail == "trusted: [0] -> [1] -> bundle's 'Unit Root CA'"
    missing = validate(chain[:1], "client", T0, bundle)
    assert (
        missing.result == "fail"
        and "'Unit Intermediate CA' of [0] client-a is neither" in missing.detail
    )
    rogue_leaf = make("rogue-leaf", pki["rogue"], eku=[CLIENT], ku="sig")
    rogue = validate(ders(rogue_leaf, pki["rogue"]), "client", T0, bundle)
    assert (
        rogue.result == "fail"
        and "self-signed [1] Rogue CA, which is not in the CA bundle" in rogue.detail
    )
    expired = validate(chain, "client", T0 + timedelta(days=400), bundle)
    assert expired.result == "fail" and "expired on" in expired.detail
    server = ders(pki["server"], pki["inter"])
    assert validate(server, "server", T0, bundle, sni="www.unit.test").result == "pass"
    wrong = validate(server, "server", T0, bundle, sni="nope.unit.test")
    assert wrong.result == "fail" and wrong.detail.startswith("not trusted: name mismatch")
    assert validate(ders(pki["client"]), "client", T0, Anchors(ders(pki["inter"]))).result == "pass"


def test_a_chain_only_the_strict_verifier_refuses_is_a_warning(pki):
    weak = sha1_resigned(
        make(
            "weak-trusted",
            pki["root"],
            key="rsa1024",
            eku=[CLIENT],
            ku="sig",
            san=[x509.DNSName("w.unit.test")],
        ),
        pki["root"],
    )
    check = validate(ders(weak), "client", T0, Anchors(ders(pki["root"])))
    assert check.result == "warn"
    assert "cryptography's stricter verifier refuses it" in check.detail


def test_strict_verifier_reason_is_quoted(pki):
    bare = make(
        "no-key-ids",
        pki["inter"],
        eku=[CLIENT],
        ku="sig",
        key_ids=False,
        san=[x509.DNSName("k.unit.test")],
    )
    check = validate(ders(bare, pki["inter"]), "client", T0, Anchors(ders(pki["root"])))
    assert check.result == "warn" and "2.5.29.35" in check.detail  # authorityKeyIdentifier
    assert "(at CN=no-key-ids" in check.detail


def test_anchors_from_pem(pki):
    pem = b"".join(
        m.cert.public_bytes(serialization.Encoding.PEM) for m in (pki["root"], pki["rogue"])
    )
    assert Anchors.from_pem(pem).ders == ders(pki["root"], pki["rogue"])
    with pytest.raises(ValueError):
        Anchors.from_pem(b"no certificate here")


def test_checks_with_a_bundle_only_add_the_bundle_check(pki):
    chain = ders(pki["client"], pki["inter"])
    plain = check_chain(chain, "client", T0)
    anchored = check_chain(chain, "client", T0, anchors=Anchors(ders(pki["rogue"])))
    assert anchored.failed == ["ca_bundle"] and plain.failed == []
    assert anchored.summary()["result"] == "fail"


def test_the_readme_documents_every_check():
    from pathlib import Path

    from tlsinspect.x509 import CHECKS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Certificate checks", 1)[1].split("\n## ", 1)[0]
    for name in CHECKS:
        assert f"`{name}`" in section, name


def test_what_cryptography_only_warns_about_is_a_note(pki):
    der = pki["client"].der
    negative = der.replace(bytes.fromhex("02041234abcd"), bytes.fromhex("02049234abcd"), 1)
    assert negative != der
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the user's terminal
        info = cert_info(negative)
        report = check_chain((negative, pki["inter"].der), "client", T0)
    assert info.error is None and info.serial == "-6DCB5433"
    assert info.notes and "serial number which wasn't positive" in info.notes[0]
    assert report.find("parse") == report.find("parse", "warn")


def _openssl(der: bytes, *args: str) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    return subprocess.run(
        [openssl, "x509", "-inform", "DER", "-noout", *args],
        input=der,
        capture_output=True,
        check=True,
    ).stdout.decode()


TRICKY_NAME = x509.Name(
    [
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
        x509.RelativeDistinguishedName(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "a+b;c"),
            ]
        ),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "x@y.z")]),
        x509.RelativeDistinguishedName(
            [x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4.5"), "odd")]
        ),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, " #Müller\\ ")]),
    ]
)


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_rfc2253_names_and_key_facts_are_openssl_s(key):
    """Names as Zeek logs them: OpenSSL's RFC 2253 form without escaping UTF-8 (Zeek's
    XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB), multi-valued RDNs, unknown attribute types."""
    made = make("tricky", None, key=key, subject=TRICKY_NAME)
    info = cert_info(made.der)
    subject = _openssl(made.der, "-subject", "-nameopt", "RFC2253,-esc_msb")
    assert f"subject={info.subject_rfc2253}\n" == subject
    assert info.issuer_rfc2253 == info.subject_rfc2253
    assert rfc2253_from_der(info.subject_der) == info.subject_rfc2253
    text = _openssl(made.der, "-text")
    assert f"Public Key Algorithm: {info.key_algorithm}" in text
    if key == "rsa":
        assert f"Exponent: {info.rsa_exponent} " in text
    else:
        assert info.rsa_exponent is None and info.key_algorithm == "id-ecPublicKey"


def test_an_unreadable_name_is_said_so():
    assert rfc2253_from_der(b"\x30\x05\x31").startswith("<unreadable name")
