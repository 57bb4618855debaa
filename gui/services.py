"""Cached services every page shares: the registry per config dir and profile, merges, jobs, the proxy client."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from modelreg.jobs import JobRegistry
from modelreg.launch.running.launch_test import start_launch_test_job
from modelreg.proxy.client import ProxyAdmin, ProxyUnreachable
from modelreg.registry import Merged, Registry, default_config_dir
from modelreg.settings import PROXY_URL_ENV, SETTINGS_FILE
from modelreg.store import file_stamp, revision_of
from modelreg.views.models import ModelRow, model_rows, start_scan_job

PROFILE_KEY = "active_profile"
SCAN_REQUEST_KEY = "scan_request"


def config_dir() -> Path:
    return default_config_dir().resolve()


def _stamp(*paths: Path) -> tuple:
    """A cache key that changes whenever one of the files changes."""
    return tuple(file_stamp(path) for path in paths)


@st.cache_resource(show_spinner=False, max_entries=8)
def _registry(folder: str, profile: str | None, settings_stamp: tuple) -> Registry:
    return Registry(folder, profile)


def settings_revision() -> str:
    """A name for the settings file as it is now (it changes with every write)."""
    return format(abs(hash(_stamp(config_dir() / SETTINGS_FILE))), "x")


def default_profile() -> str | None:
    return _registry(str(config_dir()), None, _stamp(config_dir() / SETTINGS_FILE)).profile


def profile() -> str | None:
    """The profile this browser session works with (switchable on the Settings page)."""
    if PROFILE_KEY not in st.session_state:
        st.session_state[PROFILE_KEY] = default_profile()
    return st.session_state[PROFILE_KEY]


def registry(for_profile: str | None = None) -> Registry:
    """The registry for this session's profile (or another profile, e.g. the one being edited)."""
    return _registry(str(config_dir()), for_profile or profile(), _stamp(config_dir() / SETTINGS_FILE))


def layers_stamp(reg: Registry) -> tuple:
    return _stamp(reg.discovered_path, reg.curated_path)


@st.cache_resource(show_spinner=False, max_entries=4)
def _merged(folder: str, profile_name: str | None, stamp: tuple) -> Merged:
    return _registry(folder, profile_name, _stamp(Path(folder) / SETTINGS_FILE)).merged()


def merged() -> Merged:
    """The merge of the current layers (cached until a layer file changes); raises InvalidRegistry."""
    reg = registry()
    return _merged(str(reg.config_dir), reg.profile, layers_stamp(reg))


@st.cache_resource(show_spinner=False, max_entries=4)
def _rows(folder: str, profile_name: str | None, stamp: tuple, running: tuple[str, ...]) -> list[ModelRow]:
    result = _merged(folder, profile_name, stamp)
    settings = _registry(folder, profile_name, _stamp(Path(folder) / SETTINGS_FILE)).settings
    return model_rows(result.entries, result.sources, result.overridden, settings, running)


def rows(running: tuple[str, ...] = ()) -> list[ModelRow]:
    reg = registry()
    return _rows(str(reg.config_dir), reg.profile, layers_stamp(reg), running)


@st.cache_resource(show_spinner=False, max_entries=4)
def _curated_revision(path: str, stamp: tuple) -> str:
    return revision_of(Path(path).read_bytes()) if stamp[0] else revision_of(None)


def curated_revision(reg: Registry) -> str:
    """The curated file's revision, read again only when the file changed (the editor asks on every run)."""
    return _curated_revision(str(reg.curated_path), _stamp(reg.curated_path))


@st.cache_resource(show_spinner=False)
def jobs() -> JobRegistry:
    """One job registry per server process: jobs outlive reruns, page changes and other clicks."""
    return JobRegistry()


@st.cache_resource(show_spinner=False)
def _proxy(url: str, folder: str) -> ProxyAdmin:
    return ProxyAdmin(url, folder, timeout=5.0)


def proxy_url() -> str:
    """Where the proxy is: the one `modelreg up` started (it says so in the environment), else `proxy_url`."""
    return os.environ.get(PROXY_URL_ENV) or registry().settings.proxy_url


def proxy_url_mismatch() -> str | None:
    """The proxy's actual address when it differs from the `proxy_url` setting (then the GUI offers the fix)."""
    actual = os.environ.get(PROXY_URL_ENV)
    return actual if actual and actual.rstrip("/") != registry().settings.proxy_url.rstrip("/") else None


def proxy() -> ProxyAdmin:
    return _proxy(proxy_url(), str(config_dir()))


@st.cache_resource(show_spinner=False, ttl=3, max_entries=4)
def _proxy_status(url: str, folder: str) -> tuple[dict | None, str | None]:
    try:
        return _proxy(url, folder).status(), None
    except ProxyUnreachable as exc:
        return None, str(exc)


def proxy_status() -> tuple[dict | None, str | None]:
    """The proxy's /admin/status (at most 3 s old: every page run asks), or why it could not be read."""
    return _proxy_status(proxy_url(), str(config_dir()))


def proxy_changed() -> None:
    """After a reload, stop or restart: the next page run asks the proxy again."""
    _proxy_status.clear()


def running_names(status: dict | None) -> tuple[str, ...]:
    return tuple(sorted(b["name"] for b in (status or {}).get("backends") or [] if b.get("name")))


def start_launch_test(name: str, entry: dict | None = None, for_profile: str | None = None) -> None:
    """Start the launch test of one model as a background job (one per model at a time); `entry`: an unsaved merged
    entry to test instead of the saved one (the editor's form, for `for_profile`)."""
    start_launch_test_job(jobs(), registry(for_profile), name, entry)


def start_rescan(paths: list[str] | None = None, dry_run: bool = False) -> None:
    """Scan `paths` (default: the model roots) in the background: discovered facts, stubs for new models, rebuild,
    proxy reload; a dry run writes nothing and says what a scan would change."""
    job = start_scan_job(jobs(), registry(), proxy(), paths, dry_run)
    st.session_state[SCAN_REQUEST_KEY] = {"job": job.id, "paths": paths, "dry_run": dry_run}
