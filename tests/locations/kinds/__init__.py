"""One module per location kind under test; each defines PROVIDERS (see tests/locations/provider.py)."""
