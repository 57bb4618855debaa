"""The LiteLLM proxy config that puts one gateway in front of every host: a deployment per (model, host)."""
from __future__ import annotations

from typing import Any

from modelreg.errors import BadInput
from modelreg.hosts.export import exact_yaml
from modelreg.hosts.status import HostModel, HostStatus
from modelreg.settings import Host

PIN = "@"  # `<model>@<host>` asks for the model on that host, falling back to the model's other hosts
COOLDOWN_S = 30  # how long LiteLLM skips a host after a failed request before it tries it again
# LiteLLM's openai client needs some key; a host without proxy_api_key ignores whatever it is sent
NO_KEY = "none"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # the key clients send to the gateway; LiteLLM refuses to start without one


def deployment(model_name: str, model: HostModel, host_name: str, host: Host) -> dict[str, Any]:
    """One LiteLLM deployment: `model_name` answered by `model` on one host's proxy."""
    info: dict[str, Any] = {"id": f"{host_name}/{model_name}", "modelreg_host": host_name,
                            "mode": "embedding" if model.embedding else "chat",
                            "supports_vision": model.vision, "supports_function_calling": model.tools}
    if model.context_length:
        info["max_input_tokens"] = model.context_length
    return {"model_name": model_name,
            "litellm_params": {"model": f"openai/{model.name}", "api_base": f"{host.url}/v1",
                               "api_key": f"os.environ/{host.api_key_env}" if host.api_key_env else NO_KEY},
            "model_info": info}


def litellm_config(statuses: list[HostStatus], hosts: dict[str, Host]) -> dict[str, Any]:
    """model_list: one deployment per (model, host) under the model's name and one per alias, plus
    `<model>@<host>` for a model on several hosts; router_settings: retries over the hosts of a name, and
    fallbacks from each pinned host to the model's other hosts. Sorted: the same hosts give the same bytes."""
    deployments: list[dict[str, Any]] = []
    hosts_of: dict[str, list[str]] = {}
    means: dict[str, dict[str, str]] = {}  # model_name -> {host: the registry name it routes to there}
    for status in sorted(statuses, key=lambda s: s.name):
        for model in status.models:
            hosts_of.setdefault(model.name, []).append(status.name)
            for model_name in (model.name, *model.aliases):
                deployments.append(deployment(model_name, model, status.name, hosts[status.name]))
                means.setdefault(model_name, {})[status.name] = model.name
    fallbacks = []
    for name, on in sorted(hosts_of.items()):
        if len(on) < 2:
            continue
        models = {s.name: next(m for m in s.models if m.name == name) for s in statuses if s.name in on}
        for host_name in on:
            pinned = f"{name}{PIN}{host_name}"
            deployments.append(deployment(pinned, models[host_name], host_name, hosts[host_name]))
            means.setdefault(pinned, {})[host_name] = name
            fallbacks.append({pinned: [f"{name}{PIN}{other}" for other in on if other != host_name]})
    clashes = {model_name: where for model_name, where in means.items() if len(set(where.values())) > 1}
    if clashes:
        raise BadInput("; ".join(f"{model_name!r} means " + ", ".join(f"{m} on {h}" for h, m in sorted(w.items()))
                                 for model_name, w in sorted(clashes.items()))
                       + ": one gateway name would reach different models; rename the alias (or model) on one host")
    deployments.sort(key=lambda d: (d["model_name"], d["model_info"]["id"]))
    most_hosts = max((len(on) for on in hosts_of.values()), default=1)
    return {"model_list": deployments,
            "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
            "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": max(1, most_hosts),
                                "allowed_fails": 0, "cooldown_time": COOLDOWN_S, "fallbacks": fallbacks}}


def litellm_yaml(statuses: list[HostStatus], hosts: dict[str, Host]) -> str:
    """The config as LiteLLM reads it (`litellm --config FILE`), with a header naming each host's revision."""
    header = ["# LiteLLM proxy config written by `modelreg export litellm`; export again instead of editing.",
              "# hosts: " + ", ".join(f"{s.name} {s.url} revision {(s.revision or '')[:12]}"
                                      for s in sorted(statuses, key=lambda s: s.name))]
    body = exact_yaml(litellm_config(statuses, hosts))
    return "\n".join(header) + "\n" + body
