"""ping-watch hub: turns old phones into cameras for an edge-first home security system."""

from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parent.parent  # the phone page (phone_pwa/) is served from here
