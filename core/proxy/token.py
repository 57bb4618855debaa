"""The proxy's admin token: created once per registry folder (mode 0600), or given in $MODELREG_ADMIN_TOKEN."""
from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

from modelreg.errors import BadInput

TOKEN_ENV = "MODELREG_ADMIN_TOKEN"
TOKEN_FILE = ".admin-token"


def ensure_admin_token(config_dir: str | os.PathLike) -> str:
    """$MODELREG_ADMIN_TOKEN when set, else `<config-dir>/.admin-token`, created (mode 0600) on first run."""
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    path = Path(config_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TOKEN_FILE}.", dir=path.parent)  # mkstemp creates mode 0600
        try:
            os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)  # create-if-absent with its content: a proxy starting at once keeps ours
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:  # others could read it and use the admin routes: take their access away first
        path.chmod(0o600)
        logging.getLogger(__name__).warning(
            "%s had mode %04o (readable by others); changed it to 0600. If others may have read it, delete it and "
            "restart the proxy for a new token", path, mode)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise BadInput(f"{path} is empty; delete it so the proxy creates a new token, or set ${TOKEN_ENV}")
    return token


def admin_token(config_dir: str | os.PathLike) -> str | None:
    """MODELREG_ADMIN_TOKEN when set, else `<config-dir>/.admin-token` (the proxy creates it on first run)."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token.strip()
    path = Path(config_dir) / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def token_source(config_dir: str | os.PathLike) -> str:
    """Where admin_token reads the token from: the environment variable, or the token file."""
    return f"${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else str(Path(config_dir) / TOKEN_FILE)
