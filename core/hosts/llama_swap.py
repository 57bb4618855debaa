"""A llama-swap config.yaml for one host, in the format of llama-swap v250: launch commands with `${PORT}`, aliases,
ttl and groups, from that host's registry and profile."""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from modelreg.errors import BadInput
from modelreg.hosts.export import exact_yaml
from modelreg.launch.backends import SPECS
from modelreg.launch.planning.plan import LaunchPlan, exclusive_group, idle_ttl, launch_plan, served_context
from modelreg.paths import get_path
from modelreg.proxy.routing import Routes
from modelreg.registry import Registry, Snapshot
from modelreg.settings import Settings
from modelreg.values import rewrite_env_value

LLAMA_SWAP_VERSION = "v250"  # the llama-swap release whose documented config.example.yaml the export follows
PORT_MACRO = "${PORT}"
# llama-swap puts models of no group into one group that runs a single model at a time; modelreg runs a model of
# no exclusive_group beside the others, so those models get a group that neither swaps nor unloads other groups
INDEPENDENT_GROUP = "modelreg-independent"
MIN_HEALTH_CHECK_TIMEOUT = 15  # llama-swap raises a smaller healthCheckTimeout to this


@dataclass
class LlamaSwapExport:
    config: dict[str, Any]
    revision: str
    skipped: list[str] = field(default_factory=list)  # "name: why it is not in the config"


def swap_cmd(plan: LaunchPlan) -> str:
    """The plan's argv as llama-swap's `cmd`: each argument shell-quoted (llama-swap splits POSIX-style), and
    the port after `--port` replaced by the `${PORT}` macro."""
    places = [i for i in range(1, len(plan.argv)) if plan.argv[i - 1] == "--port" and plan.argv[i] == str(plan.port)]
    if len(places) != 1:
        raise BadInput(f"model {plan.name!r}: its command has no single `--port {plan.port}` to replace with "
                       f"{PORT_MACRO}")
    for arg in plan.argv:
        if "${" in arg:
            raise BadInput(f"model {plan.name!r}: argument {arg!r} holds '${{', which llama-swap would read as a "
                           "macro; change that argument")
    return " ".join(PORT_MACRO if i == places[0] else shlex.quote(arg) for i, arg in enumerate(plan.argv))


def swap_env_value(model: str, name: str, value: str) -> str:
    """A backend_config.env value as llama-swap writes it: each `$NAME` / `${NAME}` reference as `${env.NAME}` (read
    from llama-swap's environment when it loads the file), `$$` as `$`."""
    written = rewrite_env_value(value, lambda variable: "${env." + variable + "}")
    if "${" in re.sub(r"\$\{env\.[A-Za-z_][A-Za-z0-9_]*\}", "", written):
        raise BadInput(f"model {model!r}: backend_config.env.{name} holds '${{', which llama-swap would read as a "
                       "macro; change that value")
    return written


def model_config(plan: LaunchPlan, entry: dict[str, Any], aliases: list[str], settings: Settings) -> dict[str, Any]:
    """One model under llama-swap's `models:`, field names as documented in its config.example.yaml."""
    config: dict[str, Any] = {
        "cmd": swap_cmd(plan),
        "proxy": f"{plan.base_url.rsplit(':', 1)[0]}:{PORT_MACRO}",
        "checkEndpoint": SPECS[plan.backend].ready_path,
    }
    if plan.env:
        config["env"] = [f"{name}={swap_env_value(plan.name, name, value)}" for name, value in plan.env.items()]
    if plan.served_model_id != plan.name:
        config["useModelName"] = plan.served_model_id
    if aliases:
        config["aliases"] = sorted(aliases)
    ttl = idle_ttl(entry, settings)
    if ttl:
        config["ttl"] = math.ceil(ttl)
    if isinstance(entry.get("display_name"), str) and entry["display_name"]:
        config["name"] = entry["display_name"]
    if entry.get("deprecated"):
        config["unlisted"] = True
    capabilities: dict[str, Any] = {"in": ["text", "image"] if plan.vision else ["text"],
                                    "tools": bool(get_path(entry, "capabilities.tools"))}
    if not get_path(entry, "capabilities.embedding"):
        capabilities["out"] = ["text"]
    if served_context(entry):
        capabilities["context"] = served_context(entry)
    config["capabilities"] = capabilities
    return config


def llama_swap_config(registry: Registry) -> LlamaSwapExport:
    """Every model of the registry (merged for its profile) that runs as a process, as llama-swap would run it."""
    merged = registry.merged()
    routes = Routes.build(Snapshot(merged.entries, merged.revision))
    models: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    skipped = []
    timeout = registry.settings.ready_timeout
    for entry in merged.entries:
        name = entry["name"]
        try:
            plan = launch_plan(entry, registry.settings)
        except BadInput as exc:
            skipped.append(f"{name}: {exc}")
            continue
        if not plan.is_process:
            skipped.append(f"{name}: {plan.backend} models run in their daemon, not as a process llama-swap starts")
            continue
        try:
            models[name] = model_config(plan, entry, routes.aliases_of.get(name, []), registry.settings)
        except BadInput as exc:
            skipped.append(f"{name}: {exc}")
            continue
        timeout = max(timeout, plan.ready_timeout)
        groups.setdefault(exclusive_group(entry) or INDEPENDENT_GROUP, []).append(name)
    if INDEPENDENT_GROUP in groups and any(exclusive_group(routes.by_name[n]) for n in groups[INDEPENDENT_GROUP]):
        raise BadInput(f"exclusive_group {INDEPENDENT_GROUP!r} is the name the export gives models of no group; "
                       "rename that exclusive_group")
    group_configs = {
        group: {"swap": group != INDEPENDENT_GROUP, "exclusive": False, "members": sorted(members)}
        for group, members in groups.items()
    }
    config = {"healthCheckTimeout": max(MIN_HEALTH_CHECK_TIMEOUT, math.ceil(timeout)), "models": models,
              "routing": {"router": {"use": "group", "settings": {"groups": group_configs}}}}
    return LlamaSwapExport(config, merged.revision, skipped)


def llama_swap_yaml(export: LlamaSwapExport, host: str | None, profile: str | None) -> str:
    header = [f"# llama-swap config.yaml ({LLAMA_SWAP_VERSION} format) for "
              + (f"host {host}" if host else "this machine") + f", profile {profile or 'none'}, written by "
              f"`modelreg export llama-swap` from revision {export.revision[:12]}; export again instead of editing."]
    header += ["# skipped " + " ".join(line.split()) for line in export.skipped]
    body = exact_yaml(export.config)
    return "\n".join(header) + "\n" + body
