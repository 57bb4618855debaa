"""Settings read without pydantic where they were validated before: the `Settings` model's values, cached per user."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelreg.errors import StorageError
from modelreg.store import SETTINGS_FILE, atomic_write, user_cache_dir

if TYPE_CHECKING:
    from modelreg.settings import Settings

# What decides how a settings file validates besides its bytes: the model's source and the helpers it calls, the
# pydantic installed, and this interpreter (the default executable of llama-cpp-python is sys.executable).
_MODEL_SOURCES = ("settings.py", "values.py", "fields.py", "errors.py", "paths.py")
_CACHED_FILES = 64  # settings files' contents kept (one per registry and edit): the oldest go first


class SettingsView:
    """Answers like the `Settings` model it was made from: a setting whose validated value is plain JSON comes from
    the cache; anything else (a host, the port range's pair, a method of the model) from the model, which is
    validated from the same file on first use (and pydantic imported then)."""

    def __init__(self, path: Path, text: bytes | None, profile: str | None, values: dict[str, Any],
                 plain: frozenset[str], model: Settings | None = None):
        self._path, self._text, self._profile = path, text, profile
        self._values, self._plain, self._model = values, plain, model

    @property
    def registry_folder(self) -> Path:
        return self._path.parent

    def model(self) -> Settings:
        """The pydantic model of these settings."""
        if self._model is None:
            from modelreg.settings import parse_settings
            model = parse_settings(self._path, self._text)
            model._registry_folder = self.registry_folder
            self._model = model.for_profile(self._profile)
        return self._model

    def __getattr__(self, name: str) -> Any:
        if name in self._plain:
            return self._values[name]
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.model(), name)

    def for_profile(self, profile: str | None) -> Settings:
        """These settings with the profile's overrides applied (validated by the model when the cache has not seen
        them)."""
        if not profile or not self._values["profiles"].get(profile):
            return cast("Settings", self)
        return _cached(self._path, self._text, profile)


def load_settings(config_dir: Path) -> Settings:
    """The registry's settings (`<config-dir>/settings.json`; defaults where it is missing), validated by the model;
    a file with the same bytes validated before, by the same model, is read from the per-user cache instead."""
    path = Path(os.path.abspath(config_dir)) / SETTINGS_FILE
    try:
        text: bytes | None = path.read_bytes()
    except FileNotFoundError:
        text = None
    return _cached(path, text, None)


def active_profile(settings: Settings, explicit: str | None = None) -> str | None:
    """--profile, else MODELREG_PROFILE, else the settings file's active_profile."""
    return explicit or os.environ.get("MODELREG_PROFILE") or settings.active_profile


def _cached(path: Path, text: bytes | None, profile: str | None) -> Settings:
    key = _cache_key(text)
    folder = user_cache_dir() / "settings"
    if key and not _private(folder):
        key = ""  # validated, never cached: another user could read the keys or hand out values
    cache_file = folder / f"{key[:32]}.json"
    cached = None
    try:
        info = cache_file.lstat() if key else None
        if info and stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():  # not one another user left there
            cached = json.loads(cache_file.read_bytes())
        if cached and cached["key"] == key and (profile or "") in cached["profiles"]:
            found = cached["profiles"][profile or ""]
            return cast("Settings", SettingsView(path, text, profile, found["values"], frozenset(found["plain"])))
    except (OSError, ValueError, KeyError, TypeError):
        cached = None
    view = SettingsView(path, text, profile, {}, frozenset())
    model = view.model()  # BadInput for a broken file or setting: nothing is cached
    values = json.loads(model.model_dump_json())
    view._values = values
    view._plain = frozenset(name for name, value in values.items() if value == getattr(model, name))
    profiles = cached["profiles"] if cached and cached.get("key") == key else {}
    profiles[profile or ""] = {"values": values, "plain": sorted(view._plain)}
    if not key:
        return cast("Settings", view)
    try:
        if cache_file.is_symlink():  # left while the folder was open to others: written through, it would replace
            cache_file.unlink()      # whatever file it points at
        atomic_write(cache_file, json.dumps({"key": key, "profiles": profiles}).encode(), sync=False)
        older = sorted(cache_file.parent.glob("*.json"), key=lambda f: f.stat().st_mtime_ns)[:-_CACHED_FILES]
        for stale in older:
            stale.unlink(missing_ok=True)
    except (OSError, StorageError):
        pass  # the next start validates again
    return cast("Settings", view)


def _private(folder: Path) -> bool:
    """The cache folder made the user's alone (the values include the proxy's keys), also where it was made wider
    before; False where it is not the user's own folder (another user's could hand out values as validated)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(folder, 0o700)
    except OSError:
        return False
    return True


def _cache_key(text: bytes | None) -> str:
    """The file's bytes and what decides how they validate ("" where a source cannot be read: nothing matches)."""
    digest = hashlib.sha256(b"absent" if text is None else b"file:" + text)
    here = Path(__file__).parent
    try:
        for name in _MODEL_SOURCES:
            digest.update((here / name).read_bytes())
    except OSError:
        return ""
    spec = find_spec("pydantic")
    origin = Path(spec.origin) if spec and spec.origin else None
    digest.update(f"{sys.executable}\0{origin}\0{origin.stat().st_mtime_ns if origin else 0}".encode())
    return digest.hexdigest()
