"""The hub's link to a cloud account: ``cloud.json`` in the data folder (0600), written by
``pingwatch cloud link`` and read by the uploader at each pass, so linking or unlinking needs no restart."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.datadir import write_private

FILE_NAME = "cloud.json"


@dataclass(frozen=True)
class CloudLink:
    api_url: str
    hub_id: str
    hub_token: str
    hub_name: str = ""


def link_path(data_root: Path) -> Path:
    return data_root / FILE_NAME


def load_link(data_root: Path) -> CloudLink | None:
    """The saved link, or None when the hub is not linked (or the file is unreadable: link again)."""
    try:
        raw = json.loads(link_path(data_root).read_text())
        return CloudLink(api_url=str(raw["api_url"]), hub_id=str(raw["hub_id"]), hub_token=str(raw["hub_token"]),
                         hub_name=str(raw.get("hub_name") or ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_link(data_root: Path, link: CloudLink) -> None:
    write_private(link_path(data_root), json.dumps(asdict(link), indent=2).encode())


def remove_link(data_root: Path) -> bool:
    try:
        link_path(data_root).unlink()
        return True
    except FileNotFoundError:
        return False
