"""config.yaml against the add-on linter's rules and the Supervisor's option grammar, and
agreement between config.yaml `options`/`schema`, the pydantic options model and
translations/en.yaml.

The rules are encoded here, after the add-on linter (frenck/action-addon-linter v2.21: its
JSON schema, plus its "no key equal to its default" and other extra checks) and the
Supervisor's add-on option schema grammar. Nothing outside the repository is read.
"""

from __future__ import annotations

import re
import types
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

import backup_addon
from backup_addon.options import AddonOptions

from ._helpers import SLUG, load_yaml

# --- The linter's facts ----------------------------------------------------------------------

# Every key the linter's config schema knows (it has additionalProperties: false).
ALLOWED_KEYS = {
    "advanced", "apparmor", "arch", "audio", "auth_api", "auto_uart", "backup",
    "backup_exclude", "backup_post", "backup_pre", "boot", "breaking_versions", "codenotary",
    "description", "devices", "devicetree", "discovery", "docker_api", "environment",
    "full_access", "gpio", "hassio_api", "hassio_role", "homeassistant", "homeassistant_api",
    "host_dbus", "host_ipc", "host_network", "host_pid", "host_uts", "image", "ingress",
    "ingress_entry", "ingress_port", "ingress_stream", "init", "journald", "kernel_modules",
    "legacy", "machine", "map", "name", "options", "panel_admin", "panel_icon", "panel_title",
    "ports", "ports_description", "privileged", "realtime", "schema", "services", "slug",
    "stage", "startup", "stdin", "timeout", "tmpfs", "uart", "udev", "ulimits", "url", "usb",
    "version", "video", "watchdog", "webui",
}  # fmt: skip
REQUIRED_KEYS = {"arch", "description", "name", "slug", "version"}

# The linter reports every key whose value equals the schema's default.
DEFAULTS: dict[str, Any] = {
    "advanced": False, "apparmor": True, "audio": False, "auth_api": False, "auto_uart": False,
    "backup": "hot", "boot": "auto", "devicetree": False, "docker_api": False,
    "full_access": False, "gpio": False, "hassio_api": False, "hassio_role": "default",
    "homeassistant": False, "homeassistant_api": False, "host_dbus": False, "host_ipc": False,
    "host_network": False, "host_pid": False, "host_uts": False, "ingress": False,
    "ingress_port": 8099, "ingress_stream": False, "init": True, "journald": False,
    "kernel_modules": False, "legacy": False, "options": {}, "panel_admin": True,
    "panel_icon": "mdi:puzzle", "realtime": False, "schema": {}, "stage": "stable",
    "startup": "application", "stdin": False, "timeout": 10, "tmpfs": False, "uart": False,
    "udev": False, "ulimits": {}, "usb": False, "video": False,
}  # fmt: skip

# Keys the linter rejects or warns about; we treat warnings as failures too.
REJECTED_KEYS = {
    "watchdog": "obsolete: use the Dockerfile's HEALTHCHECK",
    "codenotary": "no longer supported",
    "auto_uart": "deprecated: use uart",
    "advanced": "deprecated",
    "full_access": "flagged by the linter; lowers the security rating",
}
ARCHES = {"aarch64", "amd64", "armhf", "armv7", "i386"}
DEPRECATED_ARCHES = {"armhf", "armv7", "i386"}
HASSIO_ROLES = {"admin", "backup", "default", "homeassistant", "manager"}
MAP_TYPES = (
    "addon_config", "all_addon_configs", "config", "homeassistant_config", "ssl", "addons",
    "backup", "share", "media",
)  # fmt: skip
MAP_STRING = re.compile(rf"^({'|'.join(MAP_TYPES)})(:(rw|ro))?$")

BOOLEAN_KEYS = sorted(k for k, v in DEFAULTS.items() if isinstance(v, bool) and k != "homeassistant")

# A trimmed Draft-7 schema in the linter's spirit: known keys only, types of what we use.
CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": sorted(REQUIRED_KEYS),
    "additionalProperties": False,
    "properties": {
        **{key: {} for key in sorted(ALLOWED_KEYS)},
        **{key: {"type": "boolean"} for key in BOOLEAN_KEYS},
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "slug": {"type": "string", "pattern": r"^[-_.A-Za-z0-9]+$"},
        "description": {"type": "string", "minLength": 1},
        "url": {"type": "string", "pattern": r"^https://\S+$"},
        "arch": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": sorted(ARCHES)},
        },
        "hassio_role": {"type": "string", "enum": sorted(HASSIO_ROLES)},
        "backup": {"type": "string", "enum": ["hot", "cold"]},
        "boot": {"type": "string", "enum": ["auto", "manual", "manual_only"]},
        "startup": {
            "type": "string",
            "enum": ["application", "initialize", "once", "services", "system"],
        },
        "stage": {"type": "string", "enum": ["deprecated", "experimental", "stable"]},
        "backup_exclude": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "ingress_port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "panel_icon": {"type": "string", "pattern": r"^mdi:[a-z0-9-]+$"},
        "panel_title": {"type": "string", "minLength": 1},
        "timeout": {"type": "integer", "minimum": 10, "maximum": 300},
        "image": {"type": "string"},
        "options": {"type": "object"},
        "schema": {"type": "object"},
        "map": {
            "type": "array",
            "oneOf": [
                {"items": {"type": "string", "pattern": MAP_STRING.pattern}},
                {
                    "items": {
                        "type": "object",
                        "required": ["type"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "enum": [*sorted(MAP_TYPES), "data"]},
                            "read_only": {"type": "boolean"},
                            "path": {"type": "string"},
                        },
                    }
                },
            ],
        },
    },
}

# What the design asks of this add-on, beyond the linter.
REQUIRED_SETTINGS: dict[str, Any] = {
    "name": "3-2-1 Backup",
    "slug": SLUG,
    "init": False,
    "hassio_api": True,
    "hassio_role": "backup",
    "homeassistant_api": True,
    "ingress": True,
    "stdin": True,
}
REQUIRED_MAPS = {"backup:rw", "share:rw", "media:rw", "addon_config:rw"}

# --- The Supervisor's option grammar ---------------------------------------------------------

_RANGE = r"(?:\((?P<{0}_min>-?[\d.]+)?,(?P<{0}_max>-?[\d.]+)?\))?"
SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"(?P<bool>bool)|(?P<email>email)|(?P<url>url)|(?P<port>port)"
    r"|(?P<device>device(?:\(subsystem=[a-z]+\))?)"
    rf"|(?P<str>str){_RANGE.format('s')}"
    rf"|(?P<password>password){_RANGE.format('p')}"
    rf"|(?P<int>int){_RANGE.format('i')}"
    rf"|(?P<float>float){_RANGE.format('f')}"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")(?P<optional>\?)?$"
)
STRING_KINDS = {"str", "password", "email", "url", "match"}


def parse_element(element: object, where: str) -> tuple[str, str | None, bool]:
    """(kind, argument, optional) of one schema element such as 'list(a|b)?'."""
    assert isinstance(element, str), f"{where}: schema element {element!r} is not a string"
    match = SCHEMA_ELEMENT.match(element)
    assert match, f"{where}: {element!r} is not in the Supervisor's schema grammar"
    for kind in ("bool", "email", "url", "port", "device", "str", "password", "int", "float"):
        if match.group(kind):
            return kind, None, bool(match.group("optional"))
    if match.group("match") is not None:
        return "match", match.group("match"), bool(match.group("optional"))
    return "list", match.group("list"), bool(match.group("optional"))


def supervisor_accepts(element: str, value: object) -> bool:
    """Whether the Supervisor would accept `value` for a simple schema element."""
    kind, argument, _ = parse_element(element, "value check")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return str(value) in str(argument).split("|")
    if kind == "match":
        return re.match(str(argument), str(value)) is not None  # voluptuous Match uses re.match
    if kind in STRING_KINDS:
        return isinstance(value, str)
    if kind in ("int", "port"):
        return isinstance(value, int) and not isinstance(value, bool)
    return kind == "float" and isinstance(value, int | float)


def supervisor_validate(schema: dict[str, Any], options: dict[str, Any], where: str) -> None:
    """The Supervisor's check of an options dict against its schema (nested one level)."""
    for key, value in options.items():
        assert key in schema, f"{where}.{key}: option not in schema"
        spec = schema[key]
        if isinstance(spec, list):
            assert isinstance(value, list), f"{where}.{key}: must be a list"
            for index, item in enumerate(value):
                if isinstance(spec[0], dict):
                    supervisor_validate(spec[0], item, f"{where}.{key}[{index}]")
                else:
                    assert supervisor_accepts(spec[0], item), f"{where}.{key}[{index}]: {item!r}"
        elif isinstance(spec, dict):
            supervisor_validate(spec, value, f"{where}.{key}")
        else:
            assert supervisor_accepts(spec, value), f"{where}.{key}: {value!r} refused by {spec!r}"
    for key, spec in schema.items():
        element = spec[0] if isinstance(spec, list) else spec
        optional = isinstance(element, str) and element.endswith("?")
        assert key in options or optional, f"{where}.{key}: required option missing"


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data = load_yaml("config.yaml")
    assert isinstance(data, dict), "config.yaml must be a mapping"
    return data


@pytest.fixture(scope="module")
def translations() -> dict[str, Any]:
    data = load_yaml("translations/en.yaml")
    assert isinstance(data, dict), "translations/en.yaml must be a mapping"
    return data


# --- Linter rules ----------------------------------------------------------------------------


def test_config_validates_against_the_trimmed_linter_schema(config: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(CONFIG_SCHEMA)
    errors = sorted(jsonschema.Draft7Validator(CONFIG_SCHEMA).iter_errors(config), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_required_keys_present_and_only_known_keys(config: dict[str, Any]) -> None:
    assert set(config) >= REQUIRED_KEYS, f"missing: {sorted(REQUIRED_KEYS - set(config))}"
    assert set(config) <= ALLOWED_KEYS, f"unknown keys: {sorted(set(config) - ALLOWED_KEYS)}"


def test_no_key_is_set_to_its_default(config: dict[str, Any]) -> None:
    defaults = [k for k, v in config.items() if k in DEFAULTS and v == DEFAULTS[k]]
    assert not defaults, f"remove keys that only repeat their default value: {defaults}"


def test_no_rejected_keys(config: dict[str, Any]) -> None:
    found = {k: why for k, why in REJECTED_KEYS.items() if k in config}
    assert not found, found


def test_arch_is_supported_and_not_deprecated(config: dict[str, Any]) -> None:
    assert set(config["arch"]) <= ARCHES
    assert not set(config["arch"]) & DEPRECATED_ARCHES
    assert sorted(config["arch"]) == ["aarch64", "amd64"]


def test_hassio_role_is_known(config: dict[str, Any]) -> None:
    assert config.get("hassio_role", "default") in HASSIO_ROLES


def test_map_entries_match_the_linter_pattern(config: dict[str, Any]) -> None:
    for entry in config["map"]:
        assert isinstance(entry, str) and MAP_STRING.match(entry), entry
        assert not entry.startswith("config"), "map type 'config' is deprecated"
    assert set(config["map"]) >= REQUIRED_MAPS


def test_ingress_rules(config: dict[str, Any]) -> None:
    if config.get("ingress"):
        assert "webui" not in config, "ingress and webui exclude each other"
    if config.get("ingress_port") == 0:
        assert config.get("host_network"), "ingress_port 0 needs host_network"


def test_backup_mode_rules(config: dict[str, Any]) -> None:
    if config.get("backup") == "cold":
        assert "backup_pre" not in config and "backup_post" not in config
    assert config.get("backup", "hot") == "hot", "a cold backup would stop the add-on mid-job"
    assert all(isinstance(glob, str) and glob for glob in config["backup_exclude"])


def test_schema_is_a_mapping(config: dict[str, Any]) -> None:
    assert isinstance(config["schema"], dict) and config["schema"]
    assert isinstance(config["options"], dict)


def test_design_settings(config: dict[str, Any]) -> None:
    wrong = {k: config.get(k) for k, v in REQUIRED_SETTINGS.items() if config.get(k) != v}
    assert not wrong, f"expected {REQUIRED_SETTINGS}, got {wrong}"
    assert config["version"] == backup_addon.__version__


# --- Supervisor grammar ----------------------------------------------------------------------


def test_schema_uses_the_supervisor_grammar(config: dict[str, Any]) -> None:
    for key, spec in config["schema"].items():
        if isinstance(spec, list):
            assert len(spec) == 1, f"{key}: a list schema holds exactly one element"
            if isinstance(spec[0], dict):
                for sub, element in spec[0].items():
                    parse_element(element, f"{key}[].{sub}")
            else:
                parse_element(spec[0], f"{key}[]")
        elif isinstance(spec, dict):
            for sub, element in spec.items():
                parse_element(element, f"{key}.{sub}")
        else:
            parse_element(spec, key)
    for key, sub, pattern in _match_fields(config):
        try:
            re.compile(pattern)
        except re.error as err:
            pytest.fail(f"{key}{'.' + sub if sub else ''}: bad regex {pattern!r}: {err}")


def test_default_options_pass_the_supervisor_check(config: dict[str, Any]) -> None:
    supervisor_validate(config["schema"], config["options"], "options")


# --- Agreement with the pydantic model -------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Drop Annotated and Optional wrappers."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models behind an annotation (several for a discriminated union)."""
    annotation = _unwrap(annotation)
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    members = tuple(_unwrap(m) for m in members)
    if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return list(members)
    return []


def _enum_values(annotation: Any) -> set[str] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {str(member.value) for member in annotation}
    if get_origin(annotation) is Literal:
        return {str(value) for value in get_args(annotation)}
    return None


def _check_leaf(where: str, element: object, annotations: list[Any]) -> None:
    kind, argument, _ = parse_element(element, where)
    enums = [_enum_values(a) for a in annotations]
    if all(values is not None for values in enums):
        wanted = set().union(*[v for v in enums if v is not None])
        assert kind == "list", f"{where}: the model has choices {sorted(wanted)}; use list(...)"
        assert set(str(argument).split("|")) == wanted, f"{where}: {argument} != {sorted(wanted)}"
        return
    plain = {_unwrap(a) for a in annotations}
    assert len(plain) == 1, f"{where}: the model's types differ between kinds: {plain}"
    python_type = plain.pop()
    if python_type is bool:
        assert kind == "bool", f"{where}: the model has a bool, schema says {element!r}"
    elif python_type is str:
        assert kind in STRING_KINDS, f"{where}: the model has a str, schema says {element!r}"
    elif python_type is int:
        assert kind in ("int", "port"), f"{where}: the model has an int, schema says {element!r}"
    elif python_type is float:
        assert kind == "float", f"{where}: the model has a float, schema says {element!r}"
    else:
        pytest.fail(f"{where}: no Supervisor schema type for {python_type!r}")


def _check_field(where: str, spec: object, annotation: Any) -> None:
    annotation = _unwrap(annotation)
    if get_origin(annotation) is list:
        assert isinstance(spec, list) and len(spec) == 1, f"{where}: the model has a list"
        _check_field(f"{where}[]", spec[0], get_args(annotation)[0])
        return
    models = _models(annotation)
    if models:
        assert isinstance(spec, dict), f"{where}: the model has an object; schema must be a dict"
        fields = {name for model in models for name in model.model_fields}
        assert set(spec) == fields, f"{where}: schema keys {sorted(spec)} != model {sorted(fields)}"
        for name in sorted(fields):
            required = all(name in m.model_fields and m.model_fields[name].is_required() for m in models)
            _, _, optional = parse_element(spec[name], f"{where}.{name}")
            assert optional != required, f"{where}.{name}: required={required} but '?'={optional}"
            kinds = [m.model_fields[name].annotation for m in models if name in m.model_fields]
            _check_leaf(f"{where}.{name}", spec[name], kinds)
        return
    assert not isinstance(spec, list | dict), f"{where}: the model has a single value"
    _check_leaf(where, spec, [annotation])


def _model_defaults() -> dict[str, Any]:
    dumped = AddonOptions().model_dump(mode="json", exclude_none=True)
    return {k: v for k, v in dumped.items() if v is not None}


def test_every_option_is_in_model_options_schema_and_translations(
    config: dict[str, Any], translations: dict[str, Any]
) -> None:
    model = set(AddonOptions.model_fields)
    assert set(config["schema"]) == model, "config.yaml schema vs AddonOptions"
    assert set(translations["configuration"]) == model, "translations/en.yaml vs AddonOptions"
    assert set(config["options"]) == set(_model_defaults()), "config.yaml options vs AddonOptions"


def test_option_defaults_equal_the_model_defaults(config: dict[str, Any]) -> None:
    assert config["options"] == _model_defaults()
    assert AddonOptions.model_validate(config["options"]) == AddonOptions()


def test_required_and_optional_options_follow_the_model(config: dict[str, Any]) -> None:
    for name, field in AddonOptions.model_fields.items():
        spec = config["schema"][name]
        element = spec[0] if isinstance(spec, list) else spec
        optional = isinstance(element, str) and element.endswith("?")
        has_default = not field.is_required() and field.get_default() is not None
        # An option with a default is written in `options` and required; a field without a
        # usable default is optional (`type?`) and absent from `options`.
        assert optional != has_default, f"{name}: optional={optional}, model default={has_default}"


def test_schema_types_match_the_model_fields(config: dict[str, Any]) -> None:
    for name, field in AddonOptions.model_fields.items():
        _check_field(name, config["schema"][name], field.annotation)


# Values on both sides of the model's rules: times, add-on slugs, mount and location names.
PROBES = [
    "04:45", "00:00", "23:59", "24:00", "4:45", "04:60", "0445", "04:45:00", " 04:45", "",
    "core_mosquitto", "a0d7b954_nodered", "local_my-addon", "my.addon", "bad slug", "a/b",
    "my_nas", "NAS1", "my-nas", "my nas", "USB drive", "x" * 40, "x" * 41, "-usb", "_usb",
    "usb/x", "Ünicode", "nas_2.x-y", "abc:", "A",
]  # fmt: skip
SAMPLE_ITEMS: dict[str, dict[str, Any]] = {
    "schedules": {"type": "full", "days": "daily"},
    "locations": {"name": "USB drive", "kind": "folder", "path": "/media/usb/backups"},
}


def _match_fields(config: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """(option, sub-field, regex) of every match(...) element in the schema."""
    found = []
    for key, spec in config["schema"].items():
        element = spec[0] if isinstance(spec, list) else spec
        subs = element.items() if isinstance(element, dict) else [(None, element)]
        for sub, leaf in subs:
            kind, argument, _ = parse_element(leaf, key)
            if kind == "match":
                found.append((key, sub, str(argument)))
    return found


def _options_with(config: dict[str, Any], key: str, sub: str | None, probe: str) -> dict[str, Any]:
    value: Any = probe
    if sub is not None:
        value = {**SAMPLE_ITEMS[key], sub: probe}
    if isinstance(config["schema"][key], list):
        value = [value]
    return {**config["options"], key: value}


def test_match_patterns_accept_what_the_model_accepts(config: dict[str, Any]) -> None:
    fields = _match_fields(config)
    assert {(k, s) for k, s, _ in fields} >= {
        ("schedules", "time"),
        ("include_addons", None),
        ("supervisor_locations", None),
        ("locations", "name"),
    }
    disagreements = []
    for key, sub, pattern in fields:
        for probe in PROBES:
            try:
                AddonOptions.model_validate(_options_with(config, key, sub, probe))
                model_ok = True
            except ValidationError:
                model_ok = False
            supervisor_ok = re.match(pattern, probe) is not None
            if model_ok != supervisor_ok:
                disagreements.append(
                    f"{key}{'.' + sub if sub else ''} {probe!r}: model={model_ok} supervisor={supervisor_ok}"
                )
    assert not disagreements, "\n".join(disagreements)


def test_sample_items_are_valid(config: dict[str, Any]) -> None:
    for key, item in SAMPLE_ITEMS.items():
        options = {**config["options"], key: [item]}
        AddonOptions.model_validate(options)
        supervisor_validate(config["schema"], options, "sample")


# --- Translations ----------------------------------------------------------------------------

TRANSLATION_ITEM: dict[str, Any] = {
    "type": "object",
    "required": ["name", "description"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 20},
        "fields": {"type": "object", "additionalProperties": {"$ref": "#/definitions/item"}},
    },
}
TRANSLATIONS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {"item": TRANSLATION_ITEM},
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "configuration": {"type": "object", "additionalProperties": {"$ref": "#/definitions/item"}},
        "network": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["configuration"],
}


def test_translations_validate(translations: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(TRANSLATIONS_SCHEMA)
    errors = sorted(jsonschema.Draft7Validator(TRANSLATIONS_SCHEMA).iter_errors(translations), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_translations_name_every_nested_field(config: dict[str, Any], translations: dict[str, Any]) -> None:
    for key, spec in config["schema"].items():
        entry = translations["configuration"][key]
        element = spec[0] if isinstance(spec, list) else spec
        if isinstance(element, dict):
            assert set(entry.get("fields", {})) == set(element), f"{key}: fields of the items"
        else:
            assert "fields" not in entry, f"{key}: has no nested fields"


def test_translations_are_written_for_users(config: dict[str, Any], translations: dict[str, Any]) -> None:
    for key, spec in config["schema"].items():
        description = translations["configuration"][key]["description"]
        if isinstance(spec, list):
            assert "empty" in description.lower(), f"{key}: say what happens when it is empty"
        elif parse_element(spec, key)[0] in STRING_KINDS:
            assert "Example" in description, f"{key}: give an example"
        for sub, field in translations["configuration"][key].get("fields", {}).items():
            element = spec[0][sub]
            if parse_element(element, f"{key}.{sub}")[0] in STRING_KINDS:
                assert "Example" in field["description"], f"{key}.{sub}: give an example"
