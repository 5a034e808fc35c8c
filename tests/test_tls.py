"""The hub's certificates (issue 10, item 6): phones install the hub's certificate as a trusted root, so it must
not be able to vouch for any other site; the server certificate is short-lived and renews itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.datadir import DataDir
from hub.tls import _issue_leaf, _renew_into, cert_info, ensure_certificate, renew_if_due, server_context
from tests.test_cli import pw


@pytest.fixture
def data(tmp_path) -> DataDir:
    return DataDir(tmp_path / "data").ensure()


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> dict:
    """One real TLS handshake on 127.0.0.1; the verified peer certificate (raises what the client raises)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError):
            pass  # the client refused us: that is what some tests expect

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(srv.getsockname()) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.getpeercert()
    finally:
        t.join(10)
        srv.close()


def _signing_key(data: DataDir):
    """The key that signs for the hub: the CA's (or, before issue 10, the one certificate's own key)."""
    path = data.tls_dir / "ca-key.pem"
    return serialization.load_pem_private_key((path if path.exists() else data.key_path).read_bytes(), None)


def test_the_hub_ca_cannot_vouch_for_another_site(data, tmp_path):
    """The attack: whoever gets the hub's signing key (or a bug in the hub) mints a certificate for the user's bank;
    a phone that installed the hub's certificate as a root must refuse it."""
    ensure_certificate(data)
    ca = x509.load_pem_x509_certificate(data.cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    evil = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=5))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), critical=False)
            .sign(_signing_key(data), hashes.SHA256()))
    (tmp_path / "evil.pem").write_bytes(evil.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "evil.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "evil.pem", tmp_path / "evil.key")
    phone = ssl.create_default_context(cafile=str(data.cert_path))  # trusts the hub's certificate as a root
    with pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)name constraint|subtree"):
        _handshake(server, phone, "bank.example")
    # while the hub's own server certificate is accepted for the hub's names
    assert _handshake(server_context(data), phone, "127.0.0.1")["subjectAltName"]


def test_ca_and_server_certificate_shape(data):
    info = ensure_certificate(data, ["hub.example"])
    ca = x509.load_pem_x509_certificate(data.cert_path.read_bytes())
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and not ku.value.digital_signature
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and {"localhost", "127.0.0.1", "hub.example"} <= set(info.names)
    assert all((isinstance(g, x509.IPAddress) and g.value.prefixlen == g.value.max_prefixlen)
               or isinstance(g, x509.DNSName) for g in nc.value.permitted_subtrees)

    chain = x509.load_pem_x509_certificates(data.server_cert_path.read_bytes())
    assert [c.fingerprint(hashes.SHA256()) for c in chain[1:]] == [ca.fingerprint(hashes.SHA256())]
    leaf = chain[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc) <= dt.timedelta(days=31)
    assert info.server_not_after == leaf.not_valid_after_utc
    assert info.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=3000)  # installed once


async def test_server_certificate_renews_itself_into_the_live_context(data):
    info = ensure_certificate(data)
    names = x509.load_pem_x509_certificate(data.server_cert_path.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    ctx = server_context(data)
    leaf_key = data.key_path.read_bytes()
    _issue_leaf(data, [str(n.value) for n in names], days=5)  # a server certificate about to end
    ctx = server_context(data)
    phone = ssl.create_default_context(cafile=str(data.cert_path))
    before = await asyncio.to_thread(_handshake, ctx, phone, "127.0.0.1")
    assert ssl.cert_time_to_seconds(before["notAfter"]) < (dt.datetime.now() + dt.timedelta(days=6)).timestamp()

    _renew_into(asyncio.get_running_loop(), ctx, data)  # what the hub's 12-hourly check does
    after = await asyncio.to_thread(_handshake, ctx, phone, "127.0.0.1")
    assert ssl.cert_time_to_seconds(after["notAfter"]) > (dt.datetime.now() + dt.timedelta(days=25)).timestamp()
    assert renew_if_due(data) is False  # fresh: nothing to do
    # Phones and pins see no change: same CA, same fingerprint, same SPKI; the server key stays too.
    again = cert_info(data.cert_path)
    assert (again.fingerprint_sha256, again.spki_sha256_b64) == (info.fingerprint_sha256, info.spki_sha256_b64)
    assert data.key_path.read_bytes() == leaf_key


def _legacy_certificate(data: DataDir) -> None:
    """What hubs made before issue 10: one self-signed CA:TRUE certificate, no name constraints, 10 years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ping-watch hub"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ping-watch")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    data.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    data.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_an_old_unconstrained_certificate_is_replaced_and_the_user_told(tmp_path):
    pw("init", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True)
    data = DataDir(tmp_path / "data")
    for p in data.tls_dir.iterdir():
        p.unlink()
    _legacy_certificate(data)
    old_key = data.key_path.read_bytes()
    old_cert = data.cert_path.read_bytes()

    info = ensure_certificate(data)
    assert info.upgraded_from_legacy
    ca = x509.load_pem_x509_certificate(data.cert_path.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert (data.tls_dir / "legacy-cert.pem").read_bytes() == old_cert
    # the old root's key is gone: nothing can be signed with it any more
    assert old_key not in [p.read_bytes() for p in data.tls_dir.iterdir()]

    report = json.loads(pw("doctor", "-c", "hub.yaml", "--json", cwd=tmp_path).stdout)
    check = {c["name"]: c for c in report["checks"]}["phone certificates"]
    assert check["ok"] is False and "hub.crt" in check["detail"] and check["required"] is False
