"""ping-watch cloud: the API (accounts, hubs, event uploads, credits), storage interfaces and the worker."""

__version__ = "0.1.0"
