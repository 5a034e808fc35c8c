"""`pingwatch doctor`: everything that would stop the hub from working, checked before it bites."""

from __future__ import annotations

import importlib.metadata as md
import shutil
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.config import ConfigError, HubConfig, load_config

# Versions the media path was verified with; see pyproject.toml.
PINNED = {"aiortc": "1.16.0", "av": "18.1.0"}
REQUIRED = ["aiohttp", "numpy", "opencv-python-headless", "sqlite-utils", "paho-mqtt", "cryptography", "pydantic"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _hub_answering(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _reachable(host: str, port: int, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} reachable"
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.strerror or exc}); is the service running?"


def run_checks(config_file: Path | None) -> list[Check]:
    checks: list[Check] = []
    py_ok = sys.version_info >= (3, 11)
    checks.append(Check("python", py_ok, f"{sys.version.split()[0]}" + ("" if py_ok else " (need 3.11+)")))
    try:
        cfg = load_config(config_file)
        checks.append(Check("config", True, str(config_file or "built-in defaults")))
    except ConfigError as exc:
        checks.append(Check("config", False, str(exc)))
        return checks
    for pkg, want in PINNED.items():
        try:
            have = md.version(pkg)
            checks.append(Check(pkg, have == want, have if have == want else f"{have}, expected {want} "
                                "(reinstall with scripts/run-hub)"))
        except md.PackageNotFoundError:
            checks.append(Check(pkg, False, "not installed; run scripts/run-hub or pip install -e '.[hub]'"))
    missing = []
    for pkg in REQUIRED:
        try:
            md.version(pkg)
        except md.PackageNotFoundError:
            missing.append(pkg)
    checks.append(Check("packages", not missing, "all present" if not missing else "missing: " + ", ".join(missing)))
    checks.extend(_ports(cfg))
    checks.extend(_data(cfg))
    if cfg.mqtt.enabled:
        ok, detail = _reachable(cfg.mqtt.host, cfg.mqtt.port)
        checks.append(Check("mqtt broker", ok, detail))
    checks.extend(reach_checks(cfg))
    checks.extend(mqtt_checks(cfg))
    checks.extend(privacy_checks(cfg, config_file))
    if cfg.cloud.enabled and cfg.cloud.api_url:
        from urllib.parse import urlparse

        u = urlparse(cfg.cloud.api_url)
        ok, detail = _reachable(u.hostname or "", u.port or (443 if u.scheme == "https" else 80))
        checks.append(Check("cloud api", ok, detail, required=False))
    return checks


def _ports(cfg: HubConfig) -> list[Check]:
    out = []
    for label, host, port in (("https port", cfg.server.host, cfg.server.https_port),
                              ("http port", "127.0.0.1", cfg.server.http_port)):
        if port is None:
            continue
        if _port_free(host, port):
            out.append(Check(label, True, f"{host}:{port} free"))
        elif _hub_answering(port):
            out.append(Check(label, True, f"{port} in use (by a running hub?)", required=False))
        else:
            out.append(Check(label, False,
                             f"{host}:{port} in use; stop that program or change server.{label.replace(' ', '_')}"))
    return out


def _data(cfg: HubConfig) -> list[Check]:
    from cryptography import x509

    from hub.datadir import DataDir
    from hub.tls import TlsError, cert_info, is_constrained_ca

    data = DataDir(cfg.storage.data_dir)
    out = []
    root = data.root if data.root.exists() else next((p for p in data.root.parents if p.exists()), Path("/"))
    writable = shutil.disk_usage(root) is not None and _writable(root)
    out.append(Check("data dir", writable, f"{data.root}" + ("" if data.root.exists() else " (made at first run)")
                     + ("" if writable else ": not writable")))
    free_gb = shutil.disk_usage(root).free / 1e9
    need = cfg.storage.min_free_gb + 0.5
    out.append(Check("disk space", free_gb >= need, f"{free_gb:.1f} GB free (want ≥ {need:.1f} GB)"))
    if data.cert_path.exists():
        try:
            info = cert_info(data.cert_path)
            import datetime as dt

            days = (info.not_after - dt.datetime.now(dt.UTC)).days
            out.append(Check("certificate", days > 0,
                             f"valid {days} more days; SHA-256 {info.fingerprint_sha256}"))  # in full: compared
            if info.upgraded_from_legacy:
                out.append(Check("phone certificates", False,
                                 "the hub's old certificate (it could vouch for any site) was replaced: on each phone "
                                 "open https://<hub>:8443/hub.crt, install it and remove the old 'ping-watch hub' "
                                 f"profile; then delete {data.tls_dir / 'upgraded-from-legacy'} to silence this",
                                 required=False))
            elif not is_constrained_ca(x509.load_pem_x509_certificate(data.cert_path.read_bytes())):
                out.append(Check("phone certificates", False, "the certificate is not a constrained hub CA; restart "
                                 "the hub to replace it", required=False))
        except TlsError as exc:
            out.append(Check("certificate", False, str(exc)))
    else:
        out.append(Check("certificate", True, "none yet; made by 'pingwatch init' or at first run", required=False))
    return out


# -- insecure choices a user can still make: warnings (required=False), never failures ----------------------------


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reach_checks(cfg: HubConfig) -> list[Check]:
    """A hub bound to loopback answers only this machine: no phone can pair or stream (a warning: a reverse proxy
    or an SSH tunnel in front of it is a choice)."""
    host = cfg.server.host
    if not _loopback(host):
        return [Check("phone access", True, f"listening on {host}:{cfg.server.https_port}", required=False)]
    return [Check("phone access", False, f"server.host is {host}: only this machine can reach the hub, no phone "
                  "can pair or stream; set server.host: 0.0.0.0 (or this machine's LAN address)", required=False)]


def mqtt_checks(cfg: HubConfig) -> list[Check]:
    """Whoever may publish on the broker may disarm the hub, switch cameras off and ask for snapshots."""
    m = cfg.mqtt
    if not m.enabled:
        return []
    out = []
    if m.username:
        out.append(Check("mqtt auth", True, f"as user '{m.username}'", required=False))
    else:
        out.append(Check("mqtt auth", False, "no broker user: on a broker that allows anonymous clients anyone on it "
                         "can disarm the hub; give the hub an account (mqtt.username/password) and set "
                         "allow_anonymous false", required=False))
    if m.tls or m.ca_file or m.cert_file:
        out.append(Check("mqtt tls", True, "TLS to the broker", required=False))
    elif _loopback(m.host):
        out.append(Check("mqtt tls", True, "broker on this machine; no TLS needed", required=False))
    else:
        out.append(Check("mqtt tls", False, f"{m.host} is reached without TLS: the broker password and every command "
                         "cross the LAN in clear; set mqtt.tls: true (port 8883)", required=False))
    if m.disarm_code:
        out.append(Check("mqtt disarm code", True, "DISARM over MQTT needs the code", required=False))
    else:
        out.append(Check("mqtt disarm code", False, "any client allowed on the broker can disarm without a code; set "
                         "mqtt.disarm_code (Home Assistant then asks for it)", required=False))
    return out


def privacy_checks(cfg: HubConfig, config_file: Path | None) -> list[Check]:
    """The data folder and the config must be this user's alone (clips of the home, credentials)."""
    from hub.datadir import DataDir, is_private

    data = DataDir(cfg.storage.data_dir)
    out = []
    if data.root.exists():
        open_to = [p for p in (data.root, data.clips_dir, data.db_path, data.secrets_path) if p.exists()
                   and not is_private(p)]
        out.append(Check("data privacy", not open_to,
                         "only this user can read the data folder" if not open_to else
                         "readable by other local users: " + ", ".join(str(p) for p in open_to)
                         + f"; run 'chmod -R go= {data.root}' (the hub also tightens it at start)", required=False))
    if config_file is not None and config_file.exists():
        ok = is_private(config_file)
        out.append(Check("config privacy", ok, f"{config_file} is private" if ok else
                         f"{config_file} is readable by other local users and may hold broker/cloud credentials; "
                         f"run 'chmod 600 {config_file}'", required=False))
    return out


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK)
