"""3-2-1 Backup: a Home Assistant add-on that makes the 3-2-1 backup rule automatic and proven."""

__version__ = "0.2.0"
