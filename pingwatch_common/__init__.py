"""What the hub and the cloud both need and neither may import from the other (they are separate programs):
reading a validated YAML config file with environment overrides, and keeping secrets out of logs.
Imports neither ``hub``, ``cloud`` nor ``mqtt`` (an import-linter contract)."""
