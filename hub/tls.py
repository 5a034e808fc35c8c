"""The hub's self-signed HTTPS certificate.

Phones only grant the camera to a secure context, so the hub must speak HTTPS on the LAN. The certificate is
made at first run, covers the names and addresses phones may use, and lives for years: phones that trusted it
must not have to trust a new one every few months.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.datadir import DataDir, write_private

VALID_DAYS = 3650


class TlsError(Exception):
    pass


@dataclass(frozen=True)
class CertInfo:
    path: Path
    spki_sha256_b64: str  # what a browser pins with --ignore-certificate-errors-spki-list
    fingerprint_sha256: str  # what a user compares on the phone
    not_after: dt.datetime
    names: list[str]


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


def ensure_certificate(data: DataDir, extra_names: list[str] | None = None) -> CertInfo:
    """Load the certificate, making one on first run."""
    if not data.cert_path.exists() or not data.key_path.exists():
        _make_certificate(data, _names(extra_names or []))
    return cert_info(data.cert_path)


def _make_certificate(data: DataDir, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ping-watch hub"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ping-watch")])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # CA:TRUE lets iOS and Android install it as a trusted root profile; it signs nothing else.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    data.tls_dir.mkdir(parents=True, exist_ok=True)
    write_private(
        data.key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    data.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def cert_info(path: Path) -> CertInfo:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"{path}: unreadable certificate ({exc}); delete the tls/ folder to make a new one") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        names = []
    return CertInfo(
        path=path,
        spki_sha256_b64=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        not_after=cert.not_valid_after_utc,
        names=names,
    )


def server_context(data: DataDir) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(data.cert_path, data.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot load the HTTPS certificate from {data.tls_dir} ({exc}); delete that folder and restart to "
            f"make a new one (phones must then trust it again)"
        ) from None
    return ctx
