"""Model download with a checksum, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.worker.errors import ModelError
from cloud.worker.fetch_model import fetch_model

BODY = b"not really onnx, but bytes with a known hash" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/model.onnx":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_installs_when_the_checksum_matches(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "coco.onnx"
    assert fetch_model(f"{server}/model.onnx", hashlib.sha256(BODY).hexdigest(), dest) == dest
    assert dest.read_bytes() == BODY
    assert [p.name for p in dest.parent.iterdir()] == ["coco.onnx"]  # no temporary file left


def test_mismatch_or_404_installs_nothing_and_keeps_the_old_model(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "coco.onnx"
    dest.write_bytes(b"the working model")
    with pytest.raises(ModelError, match="checksum mismatch"):
        fetch_model(f"{server}/model.onnx", "0" * 64, dest)
    with pytest.raises(ModelError, match="HTTP 404"):
        fetch_model(f"{server}/other.onnx", hashlib.sha256(BODY).hexdigest(), dest)
    with pytest.raises(ModelError, match="64 hex digits"):
        fetch_model(f"{server}/model.onnx", "abc", dest)
    assert dest.read_bytes() == b"the working model"
    assert [p.name for p in tmp_path.iterdir()] == ["coco.onnx"]
