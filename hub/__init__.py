"""ping-watch hub: turns old phones into cameras for an edge-first home security system."""

__version__ = "0.1.0"
