"""Download a detector model from a URL and install it only when its SHA-256 matches.

Used to put a COCO model (an Ultralytics ONNX export you host, e.g. in your own Blob container) on workers:
``python -m cloud.worker.fetch_model URL --sha256 HEX --dest /var/lib/pingwatch/models/yolov8n.onnx``.
The file is streamed to a temporary name beside ``dest`` and renamed into place after the check, so a failed or
tampered download never replaces a working model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import typer

from cloud.worker.errors import ModelError


def fetch_model(url: str, sha256: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if its SHA-256 is ``sha256``; an existing matching file is kept as is."""
    want = sha256.strip().lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise ModelError("--sha256 must be 64 hex digits", "run `sha256sum model.onnx` where you exported it")
    if dest.is_file() and _sha256(dest) == want:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as r:
            if r.status_code != 200:
                raise ModelError(f"download failed: HTTP {r.status_code} from {url}", "check the URL")
            for chunk in r.iter_bytes(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != want:
            raise ModelError(f"checksum mismatch: got {got}, expected {want}",
                             "the file at the URL is not the model you exported; nothing was installed")
        tmp.replace(dest)
        return dest
    except httpx.HTTPError as exc:
        raise ModelError(f"download failed: {exc}", "check the URL and the network") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: Annotated[str, typer.Argument(help="Where the ONNX model is (https://...).")],
          sha256: Annotated[str, typer.Option(help="Expected SHA-256 of the file (64 hex digits).")],
          dest: Annotated[Path, typer.Option(help="Where to install it.")]) -> None:
    """Download a detector model and install it only if its checksum matches."""
    try:
        path = fetch_model(url, sha256, dest)
    except ModelError as exc:
        typer.echo(f"error: {exc.message}\nhint: {exc.hint}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"installed {path}")


if __name__ == "__main__":
    typer.run(fetch)
