"""Small, realistic files the simulated system backs up, created on first start."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .config import SimConfig

CONFIGURATION_YAML = """\
# Loads default set of integrations. Do not remove.
default_config:

homeassistant:
  name: Home
  unit_system: metric
  time_zone: Europe/Amsterdam

frontend:
  themes: !include_dir_merge_named themes

automation: !include automations.yaml
script: !include scripts.yaml
scene: !include scenes.yaml
"""

AUTOMATIONS_YAML = """\
- id: '1700000000001'
  alias: Porch light at sunset
  trigger:
    - platform: sun
      event: sunset
  action:
    - service: light.turn_on
      target:
        entity_id: light.porch
"""


def seed(config: SimConfig) -> None:
    """Create the directory tree and any missing sample file (never overwrites)."""
    for directory in (
        config.backup_dir,
        config.tmp_dir,
        *(config.mount_dir(name) for name in config.mounts),
    ):
        directory.mkdir(parents=True, exist_ok=True)
    _seed_homeassistant(config.homeassistant_dir)
    for addon in config.installed_addons():
        data = config.addon_data_dir(addon.slug)
        _write(data / "options.json", json.dumps(addon.options, indent=2) + "\n")
        _write(data / "state.json", json.dumps({"version": addon.version}) + "\n")
    _write(config.folder_dir("share") / "notes" / "readme.txt", "Shared files of the house.\n")
    _write(config.folder_dir("share") / "floorplan.svg", '<svg xmlns="http://www.w3.org/2000/svg"/>\n')
    _write(
        config.folder_dir("addons/local") / "my_addon" / "config.yaml",
        "name: My add-on\nversion: '1.0.0'\nslug: my_addon\ndescription: Local test add-on\n"
        "arch:\n  - amd64\n  - aarch64\n",
    )
    _write(config.folder_dir("ssl") / "fullchain.pem", _pem("CERTIFICATE"))
    _write(config.folder_dir("ssl") / "privkey.pem", _pem("PRIVATE KEY"))
    _write(config.folder_dir("media") / "recordings" / "doorbell.txt", "No recordings yet.\n")


def _seed_homeassistant(directory: Path) -> None:
    _write(directory / "configuration.yaml", CONFIGURATION_YAML)
    _write(directory / "automations.yaml", AUTOMATIONS_YAML)
    _write(directory / "scripts.yaml", "")
    _write(directory / "scenes.yaml", "")
    _write(directory / "secrets.yaml", "# Use this file to store secrets\nwifi_password: hunter2\n")
    _write(
        directory / ".storage" / "core.config_entries",
        json.dumps(
            {"version": 1, "minor_version": 5, "key": "core.config_entries", "data": {"entries": []}},
            indent=2,
        )
        + "\n",
    )
    # Excluded from every Home Assistant backup by the Supervisor's filters.
    _write(directory / "home-assistant.log", "2026-08-21 04:45:00 INFO (MainThread) started\n")
    _write(directory / "tts" / "cache.mp3", "not really audio\n")
    database = directory / "home-assistant_v2.db"
    if not database.exists():
        with sqlite3.connect(database) as conn:
            conn.execute("CREATE TABLE states (state_id INTEGER PRIMARY KEY, entity_id TEXT, state TEXT)")
            conn.executemany(
                "INSERT INTO states (entity_id, state) VALUES (?, ?)",
                [("sun.sun", "above_horizon"), ("light.porch", "off")],
            )
        conn.close()


def _write(path: Path, text: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _pem(label: str) -> str:
    return f"-----BEGIN {label}-----\nU2ltdWxhdGVkIGRhdGEsIG5vdCBhIHJlYWwga2V5Lgo=\n-----END {label}-----\n"
