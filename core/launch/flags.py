"""Launch flags in extra_args: which flag a token names, its value, and the checks before a launch."""
from __future__ import annotations

import json
from typing import Any

from modelreg.errors import BadInput
from modelreg.launch.backends import SPECS, BackendSpec


def flag_name(token: str, backend: str) -> str | None:
    """The canonical flag a token names (`--max_model_len=4` -> `--max-model-len`), or None for a value."""
    spec = SPECS[backend]
    if not token.startswith("-") or len(token) < 2 or _is_number(token):
        return None
    flag = token.split("=", 1)[0]
    if spec.underscores_are_dashes and flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
    return spec.flag_aliases.get(flag, flag)


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _takes_value(flag: str, spec: BackendSpec) -> bool:
    return spec.value_flags is None or flag in spec.value_flags


def check_extra_args(name: str, backend: str, extra_args: Any) -> list[str]:
    """Refuse extra_args the launcher cannot pass on as given; return them as a list of strings.

    Errors name the model and the flag: a flag given twice, a flag the launcher sets itself, a value-taking flag
    with no value after it.
    """
    if extra_args is None:
        return []
    if not isinstance(extra_args, list) or not all(isinstance(a, str) for a in extra_args):
        raise BadInput(f"model {name!r}: backend_config.extra_args must be a list of strings, "
                       f"got {json.dumps(extra_args)}")
    spec = SPECS[backend]
    seen: dict[str, int] = {}
    for index, token in enumerate(extra_args):
        flag = flag_name(token, backend)
        if flag is None:
            continue
        if flag in spec.reserved:
            raise BadInput(f"model {name!r}: extra_args sets {token.split('=', 1)[0]}, which the launcher sets "
                           f"itself from the entry (backend_config.port/host, served_model_id, model_path); "
                           f"remove it from extra_args and change the entry's field instead")
        if flag in seen and flag not in spec.repeatable:
            raise BadInput(f"model {name!r}: extra_args gives {flag} twice (arguments {seen[flag] + 1} and "
                           f"{index + 1}); keep one")
        seen[flag] = index
        if "=" in token or not _takes_value(flag, spec):
            continue
        following = extra_args[index + 1] if index + 1 < len(extra_args) else None
        if following is None or flag_name(following, backend) is not None and following.startswith("--"):
            where = "at the end of extra_args" if following is None else f"before {following}"
            raise BadInput(f"model {name!r}: {token} takes a value but has none ({where}); "
                           f"add the value after it or remove the flag")
    return list(extra_args)


def flag_value(args: list[str], flag: str, backend: str) -> str | None:
    """The value extra_args give a flag (either `--flag value` or `--flag=value`), or None."""
    wanted = flag_name(flag, backend)
    for index, token in enumerate(args):
        if flag_name(token, backend) != wanted:
            continue
        if "=" in token:
            return token.split("=", 1)[1]
        return args[index + 1] if index + 1 < len(args) else None
    return None
