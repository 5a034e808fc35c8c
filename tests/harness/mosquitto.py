"""A real Mosquitto broker on 127.0.0.1:<free port>, no persistence: anonymous by default; with ``passwords`` it
takes only those accounts (a password file made by Debian's ``mosquitto_passwd``), and with ``tls`` it adds a TLS
listener on a second port (server certificate from :func:`make_pki`, optionally requiring a client certificate).
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, INSTALL_HINT, ServiceStartError, free_port, stop_process, wait_for_port


def find_mosquitto_passwd() -> str:
    exe = shutil.which("mosquitto_passwd")
    if not exe:
        raise ServiceStartError(
            f"mosquitto_passwd: not installed (Debian package mosquitto); {INSTALL_HINT}")
    return exe


@dataclass(frozen=True)
class Pki:
    """A throw-away CA and what it signed, as PEM files: a server certificate for 127.0.0.1/localhost and a
    client certificate; ``other_ca`` signed nothing here (a client trusting it must refuse the broker)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_pki(folder: Path) -> Pki:
    """Generate a test CA, a server certificate (SAN 127.0.0.1 and localhost) and a client certificate with the
    ``cryptography`` package (EC P-256, valid one day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(cn: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, server: bool
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    ca, ca_key = make_ca("ping-watch test CA")
    other, _ = make_ca("some other CA")
    server, server_key = leaf("mosquitto", ca, ca_key, server=True)
    client, client_key = leaf("pingwatch-hub", ca, ca_key, server=False)
    return Pki(ca=write_cert(ca, folder / "ca.pem"), server_cert=write_cert(server, folder / "server.pem"),
               server_key=write_key(server_key, folder / "server.key"),
               client_cert=write_cert(client, folder / "client.pem"),
               client_key=write_key(client_key, folder / "client.key"),
               other_ca=write_cert(other, folder / "other-ca.pem"))


@dataclass(frozen=True)
class TlsListener:
    pki: Pki
    require_client_cert: bool = False


def find_mosquitto() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if not exe:
        raise ServiceStartError(
            f"mosquitto: the `mosquitto` binary is not installed (Debian package mosquitto); {INSTALL_HINT}")
    return exe


@dataclass
class Mosquitto:
    host: str
    port: int
    workdir: Path
    log_path: Path
    startup_s: float = 0.0
    tls_port: int | None = None  # the TLS listener, when started with one
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_mosquitto(timeout: float = 15.0, *, passwords: dict[str, str] | None = None,
                    tls: TlsListener | None = None) -> Mosquitto:
    """Start a broker. ``passwords`` (user -> password): only those accounts may connect, on every listener.
    ``tls``: a second listener on ``Mosquitto.tls_port`` speaking TLS only. Both bind 127.0.0.1 only."""
    exe = find_mosquitto()
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pingwatch-mosquitto-"))
    port = free_port()
    conf = workdir / "mosquitto.conf"
    log_path = workdir / "mosquitto.log"
    lines = [
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
    ]
    if passwords is None:
        lines.append("allow_anonymous true")
    else:
        pw_file = workdir / "passwords"
        pw_file.touch(mode=0o600)
        for user, password in passwords.items():
            subprocess.run([find_mosquitto_passwd(), "-b", str(pw_file), user, password], check=True,
                           capture_output=True, timeout=30)
        lines += ["allow_anonymous false", f"password_file {pw_file}"]
    lines.append(f"listener {port} {HOST}")
    tls_port = None
    if tls is not None:
        tls_port = free_port()
        lines += [f"listener {tls_port} {HOST}", f"cafile {tls.pki.ca}", f"certfile {tls.pki.server_cert}",
                  f"keyfile {tls.pki.server_key}",
                  f"require_certificate {'true' if tls.require_client_cert else 'false'}"]
    if os.geteuid() == 0:
        # As root mosquitto would drop to the `mosquitto` user; stay as we are (the files are ours, in a temp dir).
        lines.append(f"user {getpass.getuser()}")
    conf.write_text("\n".join(lines) + "\n")
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    broker = Mosquitto(host=HOST, port=port, workdir=workdir, log_path=log_path, proc=proc, tls_port=tls_port)
    try:
        for p in (port, tls_port) if tls_port else (port,):
            wait_for_port(HOST, p, timeout=timeout, what=f"mosquitto on {HOST}:{p}", proc=proc, log=log_path)
    except BaseException:
        broker.stop()
        raise
    broker.startup_s = time.monotonic() - t0
    return broker
