"""The emergency kit: instructions for a person and, at the same time, an age identity file.

age reads lines starting with '#' as comments and every other non-empty line as an identity,
so `age -d -i emergency-kit.txt X.tar.age > X.tar` works on the file as it is.
"""

from __future__ import annotations

from datetime import datetime

from .age import Identity, parse_identity_file
from .keys import KeyStore, identity_for

KIT_FILENAME = "backup_321_emergency_kit.txt"


def render_kit(store: KeyStore, *, instance: str, now: datetime) -> str:
    current = store.keys[0]
    lines = [
        "# 3-2-1 Backup - EMERGENCY KIT",
        "#",
        "# Keep this file somewhere safe and NOT only on your Home Assistant device: a password",
        "# manager, a USB stick in a drawer, a printout. Without it your backups cannot be opened.",
        "# Anyone who has it can open your backups: treat it like the keys to your home.",
        "#",
        f"# Made: {now:%Y-%m-%d %H:%M %Z}   Installation: {instance}",
        "#",
        "# YOUR ENCRYPTION KEY (Home Assistant calls it the backup encryption key):",
        "#",
        f"#     {current.key}",
        "#",
        "# HOW TO RESTORE",
        "#",
        "# A. Backups Home Assistant lists (Settings > System > Backups): choose the backup,",
        "#    select Restore and enter the key above when Home Assistant asks for it.",
        "#",
        "# B. Copies the add-on made (files ending in .tar.age in your folders or cloud storage):",
        "#    1. Unlock the copy with the free tool 'age' (https://age-encryption.org), using this",
        "#       file as the identity:",
        "#           age -d -i backup_321_emergency_kit.txt COPY.tar.age > COPY.tar",
        "#       or, with the add-on's own tools:",
        "#           python3 -m backup_addon decrypt --kit backup_321_emergency_kit.txt COPY.tar.age COPY.tar",
        "#    2. In Home Assistant open Settings > System > Backups, upload COPY.tar (menu:",
        "#       Upload backup) and restore it with the key above.",
        "#    (Copies ending in plain .tar were stored without the extra lock: skip step 1.)",
        "#",
    ]
    if len(store.keys) > 1:
        lines += [
            "# OLDER KEYS: backups made before the key was changed need the key that was in use then.",
            "# Home Assistant asks for it when you restore such a backup; age tries all of them itself.",
            "#",
        ]
        for older, newer in zip(store.keys[1:], store.keys, strict=False):
            lines.append(f"#     {older.key}   (in use from {older.created_at} until {newer.created_at})")
        lines.append("#")
    lines += [
        "# The lines below are the same keys in age's format (each derived from a key above).",
        "# Do not edit them; age reads them to unlock the copies.",
        "#",
    ]
    for stored in store.keys:
        lines.append(identity_for(stored.key).to_string())
    return "\n".join(lines) + "\n"


def identities_from_kit(text: str) -> list[Identity]:
    """The identities in a kit (or any age identity file)."""
    found = parse_identity_file(text)
    if not found:
        raise ValueError("this file holds no key: use the emergency kit of 3-2-1 Backup or an age identity file")
    return found
