"""Reliability and security under faults, load and hostile input; results in docs/reliability.md."""
