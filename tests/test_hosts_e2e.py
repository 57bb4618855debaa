"""Several hosts for real: two hosts made on this machine (network namespaces, else loopback addresses), each
running `modelreg proxy` with the tiny GGUF on the real llama-cpp-python server, and the real LiteLLM proxy in
front of them, started from `modelreg export litellm`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from modelreg.store import CURATED_FILE, dumps
from support import free_port, wait_for
from support.gui_servers import REPO, ProxyProcess
from support.hosts import LITELLM, HostNetwork, LiteLLMProcess
from support.tiny_gguf import tiny_entry

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]
HOST_MODELS = {"alpha": ("tiny-shared", "tiny-a"), "beta": ("tiny-shared", "tiny-b")}
SECRETS = {"ALPHA_ADMIN_TOKEN": "alpha-admin-token", "BETA_ADMIN_TOKEN": "beta-admin-token",
           "ALPHA_API_KEY": "alpha-api-key", "BETA_API_KEY": "beta-api-key"}


class Fleet:
    """The hosts, their proxies, the registry folder the exports run from, and the gateway."""

    def __init__(self, folder: Path, hosts: HostNetwork, proxies: dict[str, ProxyProcess], local: Path):
        self.folder, self.hosts, self.proxies, self.local = folder, hosts, proxies, local
        self.gateway: LiteLLMProcess | None = None
        self.config = folder / "litellm.yaml"

    def modelreg(self, *args: str, config_dir: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir or self.local), *args],
                              capture_output=True, text=True, timeout=120, env={**os.environ, **SECRETS})

    def export(self) -> str:
        proc = self.modelreg("export", "litellm", "--out", str(self.config))
        assert proc.returncode == 0, proc.stderr
        return self.config.read_text()

    def start_gateway(self) -> LiteLLMProcess:
        if self.gateway:
            self.gateway.stop()
        self.gateway = LiteLLMProcess(self.config, free_port(), self.folder / "litellm.log", SECRETS)
        return self.gateway

    def backend_requests(self, host: str, model: str) -> int:
        """Chat requests the host's backend for `model` logged (its uvicorn access log)."""
        log = self.proxies[host].config_dir.parent / "logs" / f"{model}.log"
        return log.read_text(errors="replace").count('"POST /v1/chat/completions') if log.exists() else 0


@pytest.fixture(scope="module")
def fleet(tiny_model, tmp_path_factory):
    if not LITELLM.exists():
        message = (f"NO LITELLM: {LITELLM} is missing (`make backends` installs litellm[proxy] and links it there); "
                   "the gateway tests were SKIPPED")
        warnings.warn(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("hosts")
    with HostNetwork(list(HOST_MODELS), prefer_namespaces=os.environ.get("MODELREG_TEST_HOSTS") != "loopback") as made:
        if not made.mode.startswith("network"):
            warnings.warn(f"the test hosts ran on {made.mode} (no network namespaces here, or "
                          "MODELREG_TEST_HOSTS=loopback)")
        proxies: dict[str, ProxyProcess] = {}
        fleet = None
        try:
            for name, host in made.hosts.items():
                config_dir = folder / name / "configs"
                config_dir.mkdir(parents=True)
                aliases = {"tiny-shared": ["shared"]}
                entries = [tiny_entry(tiny_model, name=m, model_aliases=aliases.get(m, [])) for m in HOST_MODELS[name]]
                (config_dir / CURATED_FILE).write_bytes(dumps(entries))
                # a proxy listening beyond loopback (a namespace's address) needs a key: each host has one
                settings = {"log_dir": str(folder / name / "logs"), "stop_grace": 3,
                            "proxy_api_key": SECRETS[f"{name.upper()}_API_KEY"]}
                if name == "beta":
                    settings.update(active_profile="big", profiles={"big": {"stop_grace": 2}})
                (config_dir / "settings.json").write_text(json.dumps(settings))
                env = {**os.environ, "MODELREG_ADMIN_TOKEN": SECRETS[f"{name.upper()}_ADMIN_TOKEN"]}
                proxies[name] = ProxyProcess(config_dir, free_port(), folder / name / "proxy.log", env,
                                             host=host.address, wrap=host.wrap)
            local = folder / "gateway-host" / "configs"
            local.mkdir(parents=True)
            hosts = {"alpha": {"url": proxies["alpha"].url, "api_key_env": "ALPHA_API_KEY",
                               "admin_token_env": "ALPHA_ADMIN_TOKEN"},
                     "beta": {"url": proxies["beta"].url, "profile": "big", "api_key_env": "BETA_API_KEY",
                              "admin_token_env": "BETA_ADMIN_TOKEN"}}
            (local / "settings.json").write_text(json.dumps({"hosts": hosts}))
            fleet = Fleet(folder, made, proxies, local)
            fleet.export()
            fleet.start_gateway()
            yield fleet
        finally:
            if fleet and fleet.gateway:
                fleet.gateway.stop()
            for proxy in proxies.values():
                proxy.stop()
    assert made.leftovers() == []


def test_hosts_lists_each_host_with_its_revision_models_and_running_backends(fleet):
    alpha, beta = fleet.proxies["alpha"], fleet.proxies["beta"]
    reply = alpha.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {SECRETS['ALPHA_API_KEY']}"},
                            json={"model": "tiny-a", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    proc = fleet.modelreg("hosts", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {h["name"]: h for h in json.loads(proc.stdout)}
    assert listed["alpha"]["reachable"] and listed["beta"]["reachable"]
    assert listed["alpha"]["revision"] == alpha.status()["revision"]
    assert listed["beta"]["revision"] == beta.status()["revision"]
    assert [m["name"] for m in listed["beta"]["models"]] == ["tiny-b", "tiny-shared"]
    assert listed["alpha"]["running"] == ["tiny-a"] and listed["beta"]["running"] == []
    assert listed["alpha"]["admin"] == "/admin/status" and listed["beta"]["served_profile"] == "big"
    assert listed["beta"]["models"][0]["context_length"] == 512
    table = fleet.modelreg("hosts")
    assert table.returncode == 0 and "alpha" in table.stdout and "beta" in table.stdout


def test_hosts_page_shows_the_hosts_and_the_gateway_config(fleet, monkeypatch):
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(fleet.local))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(REPO / "gui" / "app.py"), default_timeout=60).run()
    at.switch_page("hosts_page.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["host"]) == ["alpha", "beta"] and list(table["reachable"]) == ["yes", "yes"]
    code = at.code[0]
    assert code.language == "yaml" and yaml.safe_load(code.value) == yaml.safe_load(fleet.config.read_text())


def test_a_model_only_host_b_has_reaches_host_b_backend(fleet):
    config = yaml.safe_load(fleet.config.read_text())
    assert {d["model_info"]["id"] for d in config["model_list"] if d["model_name"] == "tiny-b"} == {"beta/tiny-b"}
    before = fleet.backend_requests("beta", "tiny-b")
    reply = fleet.gateway.chat("tiny-b")
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-litellm-model-api-base"] == fleet.proxies["beta"].url + "/v1"
    assert fleet.backend_requests("beta", "tiny-b") == before + 1
    assert fleet.backend_requests("alpha", "tiny-b") == 0


def test_a_curated_change_reexported_and_reloaded_routes_the_new_alias(fleet):
    beta = fleet.proxies["beta"]
    proc = fleet.modelreg("set", "tiny-b", "model_aliases", "tiny-b-fast", config_dir=beta.config_dir)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: "tiny-b-fast" in beta.http.get("/v1/models", headers={
        "Authorization": f"Bearer {SECRETS['BETA_API_KEY']}"}).text, 20, "host beta to serve the new alias")
    assert fleet.gateway.chat("tiny-b-fast").status_code >= 400  # the running gateway has the old config
    text = fleet.export()
    assert "model_name: tiny-b-fast" in text
    again = fleet.modelreg("export", "litellm", "--out", str(fleet.config))
    assert again.returncode == 0 and "up to date" in again.stderr  # the same hosts give the same file
    gateway = fleet.start_gateway()  # LiteLLM reads its config when it starts
    before = fleet.backend_requests("beta", "tiny-b")
    reply = gateway.chat("tiny-b-fast")
    assert reply.status_code == 200, reply.text
    assert fleet.backend_requests("beta", "tiny-b") == before + 1


def test_a_model_on_both_hosts_is_served_while_host_a_is_stopped(fleet):
    fleet.proxies["alpha"].stop()  # the proxy stops its backends with it
    before = fleet.backend_requests("beta", "tiny-shared")
    for model in ("tiny-shared", "shared", "tiny-shared", "tiny-shared@alpha"):
        reply = fleet.gateway.chat(model)
        assert reply.status_code == 200, f"{model}: {reply.text}"
        assert reply.headers["x-litellm-model-api-base"] == fleet.proxies["beta"].url + "/v1"
    assert fleet.backend_requests("beta", "tiny-shared") == before + 4
    proc = fleet.modelreg("hosts", "--json")
    assert proc.returncode == 1
    assert [h["reachable"] for h in json.loads(proc.stdout)] == [False, True]
    refused = fleet.modelreg("export", "litellm")
    assert refused.returncode == 2 and "host alpha" in refused.stderr and "nothing written" in refused.stderr
