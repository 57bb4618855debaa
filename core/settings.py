"""App settings (`<config-dir>/settings.json`): each setting is data with its help text, per-profile overrides."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from modelreg.errors import BadInput
from modelreg.fields import LoadingState, default_executables
from modelreg.paths import deep_merge
from modelreg.store import SETTINGS_FILE, atomic_write, registry_lock
from modelreg.values import env_name, parse_size

PROXY_URL_ENV = "MODELREG_PROXY_URL"  # set by `modelreg up` for the GUI: where the proxy it started really listens


DEFAULT_PROXY_PORT = 8100
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Host(BaseModel):
    """One GPU host of several: where its `modelreg proxy` answers, the profile it runs, where its keys are."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The host's modelreg proxy, such as `http://gpu-b:8100` (without /v1).")
    profile: str | None = Field(None, description="The profile that host runs (`modelreg export llama-swap --host` "
                                                  "builds its launch commands with it).")
    api_key_env: str | None = Field(None, description="Environment variable holding the host's `proxy_api_key`.")
    admin_token_env: str | None = Field(None, description="Environment variable holding the host's admin token "
                                                          "(for its running backends and profile).")

    @field_validator("url")
    @classmethod
    def _proxy_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"{value!r} is not the URL of a modelreg proxy; write it like http://gpu-b:8100")
        return value.strip().rstrip("/").removesuffix("/v1")

    @field_validator("api_key_env", "admin_token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return env_name(value)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # the registry folder these settings were read from: relative paths in entries (chat_template.path) are resolved
    # against it, the same way by every process whatever its current folder (None: Settings() made in code)
    _registry_folder: Path | None = PrivateAttr(default=None)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def registry_folder(self) -> Path | None:
        return self._registry_folder

    active_profile: str | None = Field(
        None, description="Profile whose curated entries apply when neither --profile nor MODELREG_PROFILE is given.")
    model_roots: list[str] = Field(
        default_factory=list, description="Folders `modelreg scan` searches when no path is given (besides the "
                                          "Hugging Face and Ollama caches).")
    port_range: tuple[int, int] = Field(
        (24001, 24999), description="Inclusive range from which new curated stubs get a port no other entry uses.")
    gpu_memory: str = Field(
        "16GiB", description="GPU memory the fit estimate plans for, such as `16GiB` or `24GB`.")

    @field_validator("gpu_memory")
    @classmethod
    def _a_size(cls, value: str) -> str:
        try:
            parse_size(value)
        except BadInput as exc:
            raise ValueError(str(exc)) from None
        return value
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Fraction of GPU memory a backend may take (vLLM's --gpu-memory-utilization).")
    executables: dict[str, str] = Field(
        default_factory=default_executables,
        description="Executable per backend (`vllm`, `llama.cpp`, `llama-cpp-python`).")
    backend_host: str = Field(
        "127.0.0.1", description="Address that launched backends bind to.")
    ollama_host: str = Field(
        "http://127.0.0.1:11434",
        description="Ollama daemon that `ollama` entries run on and `download ollama` pulls through.")
    ready_timeout: float = Field(
        600.0, gt=0, description="Seconds a launched backend may take to become ready before the start fails.")
    stop_grace: float = Field(
        10.0, ge=0, description="Seconds between SIGTERM and SIGKILL when a backend is stopped.")
    idle_ttl: float | None = Field(
        None, description="Seconds without requests after which the proxy stops a backend (null: never).")
    log_dir: str = Field(
        "logs", description="Folder for backend logs and state files, relative to the config folder's parent.")
    proxy_url: str = Field(
        f"http://127.0.0.1:{DEFAULT_PROXY_PORT}",
        description="Where the GUI finds the running `modelreg proxy` to reload it after a save.")
    proxy_api_key: str | None = Field(
        None, description="One key `/v1/*` requests to the proxy must send (kept for older settings files; "
                          "`proxy_api_keys` holds any number).")
    proxy_api_keys: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Keys that `/v1/*` requests to the proxy must send (any one of them), as "
                                          "`Authorization: Bearer`, `x-api-key` or Basic; needed to bind beyond "
                                          "loopback.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins (e.g. `http://localhost:3000`, or `*`) the proxy answers "
                                          "CORS preflights for; empty: none.")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names besides loopback and the bound address that the proxy answers "
                                          "for (a Docker bridge name such as `host.docker.internal`, a LAN name); a "
                                          "request naming any other host gets 403 (DNS rebinding).")
    loading_state: LoadingState = Field(
        "reasoning", description="What a streamed chat or text completion gets while its model starts: `reasoning` "
                                 "(progress from the backend's log as `reasoning_content` chunks that chat UIs show, "
                                 "as llama-swap's `sendLoadingState`), `comments` (`: loading` SSE comment lines, "
                                 "which UIs drop) or `off` (nothing until the answer); per model: "
                                 "`backend_config.loading_state`.")
    list_aliases: bool = Field(
        False, description="List each model alias in the proxy's `/v1/models` as a model of its own (as llama-swap's "
                           "`includeAliasesInList`), so chat UIs offer it.")
    max_request_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest request body the proxy accepts.")
    activity_limit: int = Field(
        1000, ge=1, description="How many recent proxied requests the proxy keeps in memory for `/api/activity` and "
                                "the GUI's Activity page (read when the proxy starts).")
    activity_max_bytes: int = Field(
        10 * 1024 * 1024, ge=4096,
        description="Size at which the proxy's request record `<log_dir>/activity.jsonl` is rotated to "
                    "`activity.jsonl.1` (the one before is dropped), so the two take at most twice this (read when "
                    "the proxy starts).")
    history_limit: int = Field(
        50, ge=1, description="How many earlier versions of the curated file `configs/.history/` keeps.")
    history_max_bytes: int = Field(
        256 * 1024 * 1024, gt=0,
        description="Most bytes `configs/.history/` may take on disk (oldest versions go first; the newest stays).")
    hosts: dict[str, Host] = Field(
        default_factory=dict,
        description="GPU hosts by name, each `{\"url\", \"profile\", \"api_key_env\", \"admin_token_env\"}` "
                    "(see Several hosts in the manual).")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-profile overrides of the settings above, e.g. `{\"rtx4080\": {\"gpu_memory\": \"16GiB\"}}`.")

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, value: dict[str, Host]) -> dict[str, Host]:
        for name in value:
            if not HOST_NAME.match(name):
                raise ValueError(f"host name {name!r}: use letters, digits, '.', '_' or '-' (it names the host's "
                                 "deployments in the exported gateway config)")
        return value

    @property
    def load_warnings(self) -> list[str]:
        """What loading the file skipped (bad host entries), each with where and why."""
        return list(self._warnings)

    @property
    def proxy_port(self) -> int:
        """The port of proxy_url: where `modelreg proxy` binds and the GUI finds it."""
        return urlsplit(self.proxy_url).port or DEFAULT_PROXY_PORT

    def for_profile(self, profile: str | None) -> "Settings":
        """These settings with the named profile's overrides applied (objects such as `executables` merge key by
        key, so a profile that overrides one executable keeps the others)."""
        overrides = self.profiles.get(profile or "", {})
        if not overrides:
            return self
        try:
            settings = Settings.model_validate(deep_merge(self.model_dump(), overrides))
        except ValidationError as exc:
            raise BadInput(f"settings profile {profile!r}: {exc.errors()[0]['msg']}") from exc
        settings._registry_folder = self._registry_folder
        settings._warnings = self._warnings
        return settings


def parse_settings(path: Path, text: bytes | None) -> Settings:
    """The settings file's bytes (None: there is none, so every default applies) as the model validates them, or
    BadInput naming the file, line or setting."""
    if text is None:
        return Settings()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; fix the file and retry") from exc
    bad_hosts = _drop_bad_hosts(path, data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{path}: setting {field!r}: {first['msg']}") from exc
    settings._warnings = bad_hosts
    return settings


def _drop_bad_hosts(path: Path, data: Any) -> list[str]:
    """Remove from `data` each entry of `hosts` that is not a valid host, and say why: one bad host is a warning,
    the other hosts and settings still apply."""
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        return []
    warnings = []
    for position, (name, entry) in enumerate(list(hosts.items())):
        reason = None
        if not HOST_NAME.match(str(name)):
            reason = "use letters, digits, '.', '_' or '-' in a host name"
        else:
            try:
                Host.model_validate(entry)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                reason = f"{field + ': ' if field else ''}{first['msg']}"
        if reason:
            del hosts[name]
            warnings.append(f"{path}: hosts entry {position} ({name!r}) ignored: {reason}; fix or remove it")
    return warnings


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()  # save_setting(..., DEFAULT): remove the key, so the default (or the base setting) applies again


def check_setting(name: str, value: Any) -> None:
    """The checks a write makes beyond the types: model roots are existing folders, listed once; the proxy URL is
    http(s)://host:port; the port range is ordered and within 1-65535; GPU memory is a size; executables are named."""
    if name == "model_roots":
        seen: set[str] = set()
        for root in value or []:
            folder = Path(os.path.expanduser(str(root)))
            if not str(root).strip():
                raise BadInput("model_roots: an empty folder name; choose a folder")
            if not folder.is_dir():
                raise BadInput(f"model_roots: {root!r} is not an existing folder; create it or choose another")
            key = str(folder.resolve())
            if key in seen:
                raise BadInput(f"model_roots: {root!r} is listed twice")
            seen.add(key)
    elif name == "proxy_url":
        parts = urlsplit(str(value))
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise BadInput(f"proxy_url: {value!r} is not a URL like http://127.0.0.1:8100 (scheme, host and port)")
    elif name == "port_range":
        low, high = value
        if not 1 <= low <= high <= 65535:
            raise BadInput(f"port_range: {low}-{high} must be two ports from 1 to 65535, the first not above the "
                           "second")
    elif name == "gpu_memory":
        parse_size(value)
    elif name == "executables":
        for backend, exe in (value or {}).items():
            if not str(exe).strip():
                raise BadInput(f"executables: the executable for {backend!r} is empty; name a program or a path")


def save_setting(config_dir: Path, name: str, value: Any, profile: str | None = None) -> Settings:
    """Set one setting in `<config-dir>/settings.json`, or one profile's override of it; `DEFAULT` removes it.

    The one writer of settings: checked (types, then `check_setting`) before anything is written, atomic under the
    registry lock; other keys are kept as written, and a broken file is reported, never overwritten.
    """
    if name not in Settings.model_fields or name == "profiles" and profile:
        raise BadInput(f"unknown setting {name!r}; known: {', '.join(Settings.model_fields)}")
    path = Path(config_dir) / SETTINGS_FILE
    with registry_lock(config_dir):
        text = path.read_bytes() if path.exists() else None
        parse_settings(path, text)  # a broken file is reported, never overwritten
        data = json.loads(text) if text is not None else {}
        target = data.setdefault("profiles", {}).setdefault(profile, {}) if profile else data
        if value is DEFAULT:
            target.pop(name, None)
        else:
            target[name] = value
        if profile and not target:
            del data["profiles"][profile]
        where = f"profile {profile!r}: " if profile else ""
        try:
            settings = Settings.model_validate(data)
            effective = settings.for_profile(profile)
        except ValidationError as exc:
            raise BadInput(f"{where}setting {name!r}: {exc.errors()[0]['msg']}") from exc
        except BadInput as exc:
            raise BadInput(f"{where}setting {name!r}: {exc}") from exc
        if value is not DEFAULT:
            check_setting(name, getattr(effective, name))
        atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return settings
