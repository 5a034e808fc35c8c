"""The hub's HTTPS certificates: a hub CA that can only vouch for the hub, and a short-lived server certificate.

Phones only grant the camera to a secure context, so the hub must speak HTTPS on the LAN, and phones install
the hub's certificate as a trusted root. A root on a phone can vouch for any site, so it is made unable to:

* ``tls/cert.pem`` is the **hub CA** phones install (10 years: installed once). Name constraints (critical)
  permit only the hub's own names and addresses, key usage allows signing certificates only, path length 0
  forbids intermediates. Even with its key (``tls/ca-key.pem``, 0600) nobody can make a phone trust another site.
* ``tls/server.pem`` is the **server certificate** (CA:FALSE, serverAuth, 30 days) followed by the CA; the hub
  renews it itself 10 days before it ends (at start, and every 12 hours while it runs, into the live TLS
  context). Its key ``tls/key.pem`` stays across renewals.

What a user compares and what a test browser pins is the CA: its fingerprint and its SPKI
(``--ignore-certificate-errors-spki-list`` matches any certificate the server sends, and the chain carries the CA).

Hubs from before made one unconstrained self-signed root (CA:TRUE, no name constraints). It is replaced at the
first start: its key is deleted (so it can sign nothing more), the old certificate kept as
``tls/legacy-cert.pem``, and the log and ``pingwatch doctor`` say that phones must install the new one (and may
remove the old profile). No path from the old root to the new CA is possible (the old root has path length 0).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.datadir import DataDir, write_private

log = logging.getLogger(__name__)

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 30
RENEW_BEFORE = dt.timedelta(days=10)
RENEW_CHECK_S = 12 * 3600
LEGACY_NAME = "legacy-cert.pem"
UPGRADED_MARK = "upgraded-from-legacy"


class TlsError(Exception):
    pass


@dataclass(frozen=True)
class CertInfo:
    path: Path
    spki_sha256_b64: str  # what a browser pins with --ignore-certificate-errors-spki-list
    fingerprint_sha256: str  # what a user compares on the phone
    not_after: dt.datetime
    names: list[str]
    # The hub replaced an older, unconstrained certificate: phones that trusted it must install this one.
    upgraded_from_legacy: bool = False
    server_not_after: dt.datetime | None = field(default=None)  # the current server certificate's end


def lan_address() -> str:
    """The address other devices on the LAN reach this machine at (no packet is sent: UDP connect only)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # routing lookup only; UDP connect sends nothing
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def _names(extra: list[str]) -> list[str]:
    names = ["localhost", "127.0.0.1", socket.gethostname(), f"{socket.gethostname()}.local", lan_address()]
    for n in extra:
        if n and n not in names:
            names.append(n)
    return list(dict.fromkeys(names))


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n.lower()))
    return out


def _subtrees(names: list[str]) -> list[x509.GeneralName]:
    """Name-constraint subtrees for exactly these names: a DNS name (and its subdomains), an address as /32."""
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            addr = ipaddress.ip_address(n)
            out.append(x509.IPAddress(ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")))
        except ValueError:
            out.append(x509.DNSName(n.lower()))
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_id(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


# -- the CA -------------------------------------------------------------------------------------------------------


def _make_ca(data: DataDir, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    # A per-hub serial in the name: two hubs' CAs never look alike in a phone's certificate list.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ping-watch hub CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ping-watch"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, _key_id(key).digest.hex()[:16])])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
        # CA:TRUE so iOS and Android install it as a root profile; path length 0: no intermediate under it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        # The point of it all: whatever this CA signs is only valid for the hub's own names and addresses.
        .add_extension(x509.NameConstraints(permitted_subtrees=_subtrees(names), excluded_subtrees=None),
                       critical=True)
        .add_extension(_key_id(key), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(data.ca_key_path, _key_pem(key))
    data.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"{path}: unreadable certificate ({exc}); delete the tls/ folder to make a new one "
                       f"(phones must then install the new certificate)") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(f"{path}: unreadable key ({exc}); delete the tls/ folder to make a new one") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{path}: not an EC key; delete the tls/ folder to make a new one")
    return key


def is_constrained_ca(cert: x509.Certificate) -> bool:
    """A hub CA of this design (name constraints present); False for the old unconstrained root."""
    try:
        cert.extensions.get_extension_for_class(x509.NameConstraints)
        return True
    except x509.ExtensionNotFound:
        return False


def permitted_names(ca: x509.Certificate) -> list[str]:
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    out = []
    for g in nc.permitted_subtrees or []:
        if isinstance(g, x509.IPAddress) and isinstance(g.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            out.append(str(g.value.network_address))
        else:
            out.append(str(g.value))
    return out


def _permitted(name: str, allowed: list[str]) -> bool:
    try:
        return str(ipaddress.ip_address(name)) in allowed
    except ValueError:
        n = name.lower()
        return any(n == a or n.endswith("." + a) for a in allowed if not _is_ip(a))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# -- the server certificate -------------------------------------------------------------------------------------


def _issue_leaf(data: DataDir, names: list[str], days: float = LEAF_VALID_DAYS) -> None:
    ca = _load_cert(data.cert_path)
    ca_key = _load_key(data.ca_key_path)
    key = _load_key(data.key_path) if data.key_path.exists() else ec.generate_private_key(ec.SECP256R1())
    now = _now()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ping-watch hub"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ping-watch")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_key_id(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    if not data.key_path.exists():
        write_private(data.key_path, _key_pem(key))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    write_private(data.server_cert_path, chain)


def _leaf(data: DataDir) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(data.server_cert_path.read_bytes())  # the first PEM: the leaf
    except (OSError, ValueError):
        return None


def _leaf_names(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)]


def renew_if_due(data: DataDir, names: list[str] | None = None, now: dt.datetime | None = None) -> bool:
    """Issue a new server certificate when there is none, it ends within ``RENEW_BEFORE``, its key changed, or it
    lacks one of ``names`` the CA permits. ``names`` None: the current certificate's. True when one was issued."""
    now = now or _now()
    ca = _load_cert(data.cert_path)
    allowed = permitted_names(ca)
    leaf = _leaf(data)
    current = _leaf_names(leaf) if leaf is not None else []
    wanted = names if names is not None else (current or allowed)
    usable = [n for n in dict.fromkeys(wanted) if _permitted(n, allowed)]
    outside = [n for n in dict.fromkeys(wanted) if n not in usable]
    if outside:
        log.warning("the hub's certificate authority does not cover these names; phones cannot use them",
                    extra={"names": outside, "covered": allowed,
                           "hint": "set server.public_host to a covered name, or delete the tls/ folder to make a "
                                   "new authority (phones then install it again)"})
    key_matches = leaf is not None and data.key_path.exists() and leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == _load_key(
        data.key_path).public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    missing = {n.lower() for n in usable} - {n.lower() for n in current}
    due = leaf is None or not key_matches or leaf.not_valid_after_utc - now < RENEW_BEFORE or bool(missing)
    if not due:
        return False
    _issue_leaf(data, usable or allowed)
    log.info("server certificate issued", extra={"names": usable or allowed, "valid_days": LEAF_VALID_DAYS})
    return True


# -- start-up ------------------------------------------------------------------------------------------------


def _retire_legacy(data: DataDir) -> None:
    """Replace an unconstrained root from an older version: keep its certificate for reference, delete its key
    (nobody can then make it sign anything), and say what phones must do."""
    legacy = data.tls_dir / LEGACY_NAME
    data.cert_path.replace(legacy)
    for p in (data.key_path, data.server_cert_path):
        p.unlink(missing_ok=True)
    (data.tls_dir / UPGRADED_MARK).write_text(_now().isoformat())
    log.warning("the hub's certificate was replaced by a safer one; phones that installed the old certificate "
                "must install the new one", extra={"hint": "on each phone open https://<hub>:8443/hub.crt, install "
                                                           "it, and remove the old 'ping-watch hub' profile",
                                                   "old": str(legacy)})


def ensure_certificate(data: DataDir, extra_names: list[str] | None = None) -> CertInfo:
    """Make the hub CA on first run (replacing an old unconstrained certificate), and a fresh server certificate
    when the current one is missing, ending, or lacks a name the CA covers."""
    names = _names(extra_names or [])
    data.tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data.cert_path.exists() and not is_constrained_ca(_load_cert(data.cert_path)):
        _retire_legacy(data)
    if not data.cert_path.exists() or not data.ca_key_path.exists():
        for p in (data.key_path, data.server_cert_path):  # a server certificate from another CA is useless
            p.unlink(missing_ok=True)
        _make_ca(data, names)
    renew_if_due(data, names)
    return cert_info(data.cert_path)


def cert_info(path: Path) -> CertInfo:
    cert = _load_cert(path)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if is_constrained_ca(cert):
        names = permitted_names(cert)
    else:
        names = _leaf_names(cert)
    leaf = _leaf(DataDir(path.parent.parent)) if path.parent.name == "tls" else None
    return CertInfo(
        path=path,
        spki_sha256_b64=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        not_after=cert.not_valid_after_utc,
        names=names,
        upgraded_from_legacy=(path.parent / UPGRADED_MARK).exists(),
        server_not_after=leaf.not_valid_after_utc if leaf is not None else None,
    )


def server_context(data: DataDir) -> ssl.SSLContext:
    """The HTTPS server's context. Called on the running loop (``hub.app.serve``), it also renews the server
    certificate into this very context every ``RENEW_CHECK_S`` while the hub runs: new connections get it."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, data)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return ctx
    loop.call_later(RENEW_CHECK_S, _renew_into, loop, ctx, data)
    return ctx


def _load_chain(ctx: ssl.SSLContext, data: DataDir) -> None:
    try:
        ctx.load_cert_chain(data.server_cert_path, data.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot load the HTTPS certificate from {data.tls_dir} ({exc}); delete that folder and restart to "
            f"make a new one (phones must then install it again)"
        ) from None


def _renew_into(loop: asyncio.AbstractEventLoop, ctx: ssl.SSLContext, data: DataDir) -> None:
    if loop.is_closed():
        return
    try:
        if renew_if_due(data):
            _load_chain(ctx, data)
    except (TlsError, OSError) as exc:
        log.error("server certificate renewal failed; retrying later", extra={"error": str(exc)})
    loop.call_later(RENEW_CHECK_S, _renew_into, loop, ctx, data)
