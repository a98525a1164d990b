"""Static ``.../info`` payloads of a small Home Assistant OS machine."""

from __future__ import annotations

from typing import Any

from .config import AddonSpec, SimConfig

MACHINE = "qemux86-64"
ARCH = "amd64"
OS_VERSION = "16.2"
TIMEZONE = "Europe/Amsterdam"
SUPERVISOR_IP = "172.30.32.2"
CORE_IP = "172.30.32.1"


def root_info(config: SimConfig, state: str) -> dict[str, Any]:
    """``GET /info``."""
    return {
        "supervisor": config.supervisor_version,
        "homeassistant": config.homeassistant_version,
        "hassos": OS_VERSION,
        "docker": "28.3.3",
        "hostname": "homeassistant",
        "operating_system": f"Home Assistant OS {OS_VERSION}",
        "features": [
            "reboot",
            "shutdown",
            "services",
            "network",
            "hostname",
            "timedate",
            "os_agent",
            "haos",
            "resolved",
            "journal",
            "disk",
            "mount",
        ],
        "machine": MACHINE,
        "machine_id": "5c8f2a7e0b9d4e6f8a1b3c5d7e9f0a2b",
        "arch": ARCH,
        "state": state,
        "supported_arch": [ARCH, "i386"],
        "supported": True,
        "channel": "stable",
        "logging": "info",
        "timezone": TIMEZONE,
    }


def supervisor_info(config: SimConfig) -> dict[str, Any]:
    """``GET /supervisor/info``."""
    return {
        "version": config.supervisor_version,
        "version_latest": config.supervisor_version,
        "update_available": False,
        "channel": "stable",
        "arch": ARCH,
        "supported": True,
        "healthy": True,
        "ip_address": SUPERVISOR_IP,
        "timezone": TIMEZONE,
        "logging": "info",
        "debug": False,
        "debug_block": False,
        "diagnostics": False,
        "auto_update": True,
        "country": "NL",
        "wait_boot": 5,
        "detect_blocking_io": False,
        "feature_flags": {"supervisor_v2_api": False},
        "addons": [
            {
                "name": a.name,
                "slug": a.slug,
                "version": a.version,
                "version_latest": a.version,
                "update_available": False,
                "state": "started",
                "repository": a.repository,
                "icon": True,
            }
            for a in config.installed_addons()
        ],
        "addons_repositories": [
            {"name": "Local add-ons", "slug": "local"},
            {"name": "Official add-ons", "slug": "core"},
            {"name": "Home Assistant Community Add-ons", "slug": "a0d7b954"},
            {"name": "ESPHome", "slug": "5c53de3b"},
        ],
    }


def core_info(config: SimConfig) -> dict[str, Any]:
    """``GET /core/info`` (alias ``/homeassistant/info``)."""
    return {
        "version": config.homeassistant_version,
        "version_latest": config.homeassistant_version,
        "update_available": False,
        "machine": MACHINE,
        "ip_address": CORE_IP,
        "arch": ARCH,
        "image": f"ghcr.io/home-assistant/{MACHINE}-homeassistant",
        "boot": True,
        "port": 8123,
        "ssl": False,
        "watchdog": True,
        "audio_input": None,
        "audio_output": None,
        "backups_exclude_database": config.backups_exclude_database,
        "duplicate_log_file": False,
    }


def os_info() -> dict[str, Any]:
    """``GET /os/info``."""
    return {
        "version": OS_VERSION,
        "version_latest": OS_VERSION,
        "version_pending": None,
        "update_available": False,
        "board": "ova",
        "boot": "A",
        "data_disk": "/dev/sda8",
        "boot_slots": {
            "A": {"state": "booted", "status": "good", "version": OS_VERSION},
            "B": {"state": "inactive", "status": "good", "version": "16.1"},
        },
    }


def addon_info(addon: AddonSpec, index: int) -> dict[str, Any]:
    """``GET /addons/<slug>/info`` of an installed add-on."""
    hostname = addon.slug.replace("_", "-")
    ingress_token = f"sim{addon.slug.replace('_', '')}token".ljust(43, "0")[:43]
    return {
        "name": addon.name,
        "slug": addon.slug,
        "hostname": hostname,
        "dns": [f"{hostname}.local.hass.io"],
        "description": addon.description,
        "long_description": f"# {addon.name}\n\n{addon.description}.\n",
        "advanced": False,
        "stage": "stable",
        "repository": addon.repository,
        "version_latest": addon.version,
        "protected": True,
        "rating": 8 if addon.ingress else 6,
        "boot": "auto",
        "boot_config": "auto",
        "options": dict(addon.options),
        "schema": [],
        "arch": ["aarch64", "amd64"],
        "machine": [],
        "homeassistant": None,
        "url": None,
        "detached": False,
        "available": True,
        "build": addon.repository == "local",
        "network": None,
        "network_description": None,
        "host_network": False,
        "host_pid": False,
        "host_ipc": False,
        "host_uts": False,
        "host_dbus": False,
        "privileged": [],
        "full_access": False,
        "apparmor": "default",
        "icon": True,
        "logo": True,
        "changelog": True,
        "documentation": True,
        "stdin": addon.repository == "local",
        "hassio_api": addon.hassio_api,
        "hassio_role": addon.hassio_role,
        "auth_api": False,
        "homeassistant_api": addon.homeassistant_api,
        "gpio": False,
        "usb": False,
        "uart": False,
        "kernel_modules": False,
        "devicetree": False,
        "udev": False,
        "docker_api": False,
        "video": False,
        "audio": False,
        "startup": "application",
        "services": [],
        "discovery": [],
        "translations": {},
        "ingress": addon.ingress,
        "signed": False,
        "state": "started",
        "webui": None,
        "ingress_entry": f"/api/hassio_ingress/{ingress_token}" if addon.ingress else None,
        "ingress_url": f"/api/hassio_ingress/{ingress_token}/" if addon.ingress else None,
        "ingress_port": 8099 if addon.ingress else None,
        "ingress_panel": addon.ingress,
        "audio_input": None,
        "audio_output": None,
        "auto_update": False,
        "ip_address": f"172.30.33.{index}",
        "version": addon.version,
        "update_available": False,
        "watchdog": False,
        "devices": [],
        "system_managed": False,
        "system_managed_config_entry": None,
        "log_format": "plain",
    }
