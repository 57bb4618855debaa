"""The proxy in this process on a real loopback port, with vLLM stand-in backends started through the supervisor.

The real llama-cpp-python server is exercised in test_proxy_e2e.py; here the stand-in keeps each start under a second.
"""
from __future__ import annotations

import json
import os
import stat
import time

import psutil

from modelreg.proxy.app import Proxy
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE
from support import chat_body, wait_for
from support.proxy_server import ProxyServer, alive, layers, model, recorded, set_settings

OOM_LINE = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.75 GiB. GPU 0 has a total capacity of "
            "15.70 GiB of which 1.02 GiB is free.")  # as quoted in vllm-project/vllm issue threads


def test_routes_by_name_alias_and_role_and_lists_models(registry_dir, tmp_path):
    layers(registry_dir,
           model("captioner-small", model_aliases=["org/Captioner-Small"], roles=["caption"],
                 role_priority={"caption": 50}),
           model("captioner-large", roles=["caption", "keywords"], role_priority={"caption": 90}),
           model("old-model", deprecated=True))
    with ProxyServer(registry_dir) as server:
        listed = server.http.get("/v1/models").json()["data"]
        assert [m["id"] for m in listed] == ["captioner-large", "captioner-small"]
        assert listed[1]["aliases"] == ["org/Captioner-Small"]

        by_alias = server.chat("org/Captioner-Small")
        assert by_alias.status_code == 200, by_alias.text
        assert by_alias.headers["x-modelreg-model"] == "captioner-small"
        assert by_alias.json()["model"] == "captioner-small"  # the backend was asked for its served name
        by_role = server.chat("role:caption")
        assert by_role.headers["x-modelreg-model"] == "captioner-large"  # the higher role_priority wins
        assert server.chat("role:keywords").headers["x-modelreg-model"] == "captioner-large"
        assert server.chat("old-model").status_code == 200  # deprecated: unlisted, still served by name

        bodies = [r["body"]["model"] for r in recorded(tmp_path) if "body" in r]
        assert bodies == ["captioner-small", "captioner-large", "captioner-large", "old-model"]
        status = server.status()
        assert status["revision"] == server.registry.snapshot().revision
        assert {b["name"] for b in status["backends"]} == {"captioner-small", "captioner-large", "old-model"}


def test_generation_defaults_fill_what_the_request_leaves_out(registry_dir, tmp_path):
    entry = model("tagger")
    entry["generation_defaults"] = {"temperature": 0.2, "top_k": 40, "max_tokens": 256, "stop_sequences": ["###"],
                                    "context_window": 4096}
    layers(registry_dir, entry)
    with ProxyServer(registry_dir) as server:
        assert server.chat("tagger", temperature=0.9).status_code == 200
        server.http.post("/v1/embeddings", json={"model": "tagger", "input": "x"})  # the stand-in has none: 404
    chat, embedding = [r["body"] for r in recorded(tmp_path) if "body" in r]
    assert chat["temperature"] == 0.9 and chat["max_tokens"] == 2  # the client's values win
    assert chat["top_k"] == 40 and chat["stop"] == ["###"] and "context_window" not in chat
    assert embedding == {"model": "tagger", "input": "x"}


def test_unknown_model_is_404_with_close_names(registry_dir):
    layers(registry_dir, model("qwen3-8b_(Q4_K_M)", model_aliases=["qwen3:8b"], roles=["caption"]))
    with ProxyServer(registry_dir) as server:
        reply = server.chat("qwen3-8b")
        assert reply.status_code == 404
        error = reply.json()["error"]
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        assert "qwen3-8b_(Q4_K_M)" in error["close"] and "qwen3-8b_(Q4_K_M)" in error["message"]
        assert server.chat("role:captions").json()["error"]["close"] == ["role:caption"]
        assert server.status()["backends"] == []


def test_admin_needs_the_token_from_a_0600_file(registry_dir):
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        token_file = registry_dir / ".admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token_file.read_text().strip() == server.proxy.admin_token and len(server.proxy.admin_token) >= 32
        assert server.http.get("/admin/status").status_code == 401
        wrong = server.http.get("/admin/status", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert server.http.post("/admin/reload").status_code == 401
        assert server.status()["models"] == 1
    # the next run keeps the same token
    assert Proxy(Registry(registry_dir)).admin_token == token_file.read_text().strip()


def test_admin_token_from_the_environment_wins(registry_dir, monkeypatch):
    layers(registry_dir, model("m"))
    monkeypatch.setenv("MODELREG_ADMIN_TOKEN", "secret-from-env")
    with ProxyServer(registry_dir) as server:
        assert server.http.get("/admin/status", headers={"Authorization": "Bearer secret-from-env"}).status_code == 200
        assert not (registry_dir / ".admin-token").exists()


def test_api_key_and_body_limit(registry_dir):
    layers(registry_dir, model("m"))
    settings = json.loads((registry_dir / "settings.json").read_text())
    (registry_dir / "settings.json").write_text(json.dumps({**settings, "proxy_api_key": "k-123",
                                                            "max_request_bytes": 2000}))
    with ProxyServer(registry_dir) as server:
        assert server.http.get("/v1/models").status_code == 401
        assert server.chat("m").status_code == 401
        key = {"Authorization": "Bearer k-123"}
        assert server.http.get("/v1/models", headers=key).status_code == 200
        big = {"model": "m", "messages": [{"role": "user", "content": "x" * 3000}], "max_tokens": 2}
        refused = server.http.post("/v1/chat/completions", json=big, headers=key)
        assert refused.status_code == 413 and "max_request_bytes" in refused.json()["error"]["message"]

        def chunked():  # no Content-Length: the limit is enforced while reading
            yield json.dumps(big).encode()
        assert server.http.post("/v1/chat/completions", content=chunked(), headers=key).status_code == 413
        assert server.status()["backends"] == []  # nothing was started for refused requests
        json_type = {**key, "Content-Type": "application/json"}
        assert server.http.post("/v1/chat/completions", content=b"{nope", headers=json_type).status_code == 400


def test_a_failed_start_answers_the_admin_with_diagnosis_argv_and_log_tail(registry_dir, tmp_path, monkeypatch):
    layers(registry_dir, model("big_(AWQ)", extra_args=["--max-model-len", "32768"]))
    fail_log = tmp_path / "vllm-fail.log"
    fail_log.write_text(f"INFO Loading model weights took 5.2 GiB\n{OOM_LINE}\n")
    monkeypatch.setenv("STANDIN_FAIL_LOG", str(fail_log))
    with ProxyServer(registry_dir) as server:
        reply = server.chat("big_(AWQ)")
        assert reply.status_code == 503
        public = reply.json()["error"]  # a client without the admin token: the reason, not the argv or the log
        assert public["code"] == "backend_start_failed" and public["exit_code"] == 1
        assert "exited during startup with code 1" in public["message"]
        assert not {"argv", "log_tail", "log_path"} & set(public) and OOM_LINE not in reply.text
        assert public["diagnosis"][0]["rule"] == "cuda_oom" and "evidence" not in public["diagnosis"][0]
        reply = server.http.post("/v1/chat/completions", json=chat_body("big_(AWQ)"),
                                 headers={"Authorization": f"Bearer {server.proxy.admin_token}"})
        error = reply.json()["error"]
        assert error["code"] == "backend_start_failed" and error["type"] == "server_error"
        assert error["argv"][1:3] == ["serve", "/models/big_(AWQ)"] and "32768" in error["argv"]
        assert OOM_LINE in error["log_tail"]
        assert error["diagnosis"][0]["rule"] == "cuda_oom"
        status = server.status()
        assert status["backends"] == [] and status["failures"]["big_(AWQ)"]["exit_code"] == 1


def test_exclusive_group_stops_the_other_member_first(registry_dir):
    layers(registry_dir, model("a", exclusive_group="gpu0"), model("b", exclusive_group="gpu0"), model("c"))
    with ProxyServer(registry_dir) as server:
        assert server.chat("a").status_code == 200
        assert server.chat("c").status_code == 200
        pid_a = server.backend("a")["pid"]
        assert server.chat("b").status_code == 200
        assert [b["name"] for b in server.status()["backends"]] == ["b", "c"]
        assert not alive(pid_a)
        stops = [e for e in server.status()["events"] if e["event"] == "stopped"]
        assert stops[-1]["model"] == "a" and "gpu0" in stops[-1]["detail"]


def test_idle_backend_is_stopped_after_its_ttl(registry_dir):
    layers(registry_dir, model("brief", idle_ttl=3.0), model("lasting"))
    with ProxyServer(registry_dir, reap_interval=0.05) as server:
        assert server.chat("lasting").status_code == 200
        assert server.chat("brief").status_code == 200
        pid = server.backend("brief")["pid"]
        wait_for(lambda: server.backend("brief") is None, what="idle stop")
        assert not alive(pid)
        assert server.backend("lasting") is not None
        assert server.chat("brief").status_code == 200  # started again on demand


def test_changed_args_restart_only_that_backend(registry_dir, tmp_path):
    layers(registry_dir, model("changing"), model("steady"))
    with ProxyServer(registry_dir) as server:
        assert server.chat("changing").status_code == 200 and server.chat("steady").status_code == 200
        before = {b["name"]: b for b in server.status()["backends"]}
        snapshot = Registry(registry_dir).set_value("changing", "backend_config.extra_args",
                                                    ["--max-model-len", "2048"])
        wait_for(lambda: server.status()["revision"] == snapshot.revision, what="new revision served")
        after = wait_for(lambda: (b := server.backend("changing")) and b["pid"] != before["changing"]["pid"]
                         and b["ready"] and b, what="restart")
        assert after["argv"][-2:] == ["--max-model-len", "2048"] and not after["stale"]
        assert psutil.Process(after["pid"]).cmdline()[-2:] == ["--max-model-len", "2048"]
        assert not alive(before["changing"]["pid"])
        steady = server.backend("steady")
        assert (steady["pid"], steady["started_at"]) == (before["steady"]["pid"], before["steady"]["started_at"])
        starts = [r["argv"] for r in recorded(tmp_path) if "argv" in r]
        assert len(starts) == 3  # changing, steady, changing again


def test_a_busy_stale_backend_waits_unless_restart_now(registry_dir):
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        lease = server.on_loop(server.proxy.pool.acquire("m"))  # a request in flight
        pid = server.backend("m")["pid"]
        snapshot = Registry(registry_dir).set_value("m", "backend_config.extra_args", ["--seed", "7"])
        reload = server.admin("POST", "/admin/reload").json()
        assert reload["revision"] == snapshot.revision and reload["stale"] == ["m"] and reload["restarted"] == []
        time.sleep(0.3)
        busy = server.backend("m")
        assert busy["pid"] == pid and busy["stale"] and busy["in_flight"] == 1
        now = server.admin("POST", "/admin/reload", params={"restart": "now"}).json()
        assert now["restarted"] == ["m"]
        wait_for(lambda: (b := server.backend("m")) and b["pid"] != pid and b["ready"], what="forced restart")
        server.proxy.pool._loop.call_soon_threadsafe(server.proxy.pool.release, lease)
        assert server.chat("m").status_code == 200


def test_release_of_the_last_request_restarts_a_stale_backend(registry_dir):
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        lease = server.on_loop(server.proxy.pool.acquire("m"))
        pid = server.backend("m")["pid"]
        Registry(registry_dir).set_value("m", "backend_config.extra_args", ["--seed", "8"])
        wait_for(lambda: server.backend("m")["stale"], what="stale mark")
        server.proxy.pool._loop.call_soon_threadsafe(server.proxy.pool.release, lease)
        restarted = wait_for(lambda: (b := server.backend("m")) and b["pid"] != pid and b["ready"] and b,
                             what="restart when idle")
        assert restarted["argv"][-2:] == ["--seed", "8"]


def test_invalid_curated_file_keeps_the_last_good_registry(registry_dir):
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        good = server.status()["revision"]
        curated = registry_dir / CURATED_FILE
        text = curated.read_text()
        curated.write_text(text.replace('"backend"', '"backend" oops', 1))
        status = wait_for(lambda: (s := server.status())["last_reload"].get("ok") is False and s, what="error")
        assert status["revision"] == good
        assert f"{curated}:" in status["last_reload"]["error"] and "invalid JSON" in status["last_reload"]["error"]
        assert server.chat("m").status_code == 200
        assert [m["id"] for m in server.http.get("/v1/models").json()["data"]] == ["m"]
        failed = server.admin("POST", "/admin/reload")
        assert failed.json()["ok"] is False and failed.json()["revision"] == good and failed.json()["errors"]

        curated.write_text(text.replace('"extra_args": []', '"extra_args": ["--seed", "1"]'))
        status = wait_for(lambda: (s := server.status())["last_reload"].get("ok") and s["revision"] != good and s,
                          what="recovery")
        assert status["revision"] == Registry(registry_dir).snapshot().revision


def test_a_backend_that_dies_is_started_again(registry_dir):
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir, reap_interval=0.05) as server:
        assert server.chat("m").status_code == 200
        pid = server.backend("m")["pid"]
        os.kill(pid, 9)
        wait_for(lambda: server.backend("m") is None, what="exit noticed")
        assert server.chat("m").status_code == 200
        assert server.backend("m")["pid"] != pid


def test_shutdown_stops_every_backend(registry_dir):
    layers(registry_dir, model("a"), model("b"))
    with ProxyServer(registry_dir) as server:
        assert server.chat("a").status_code == 200 and server.chat("b").status_code == 200
        pids = [b["pid"] for b in server.status()["backends"]]
    assert pids and not any(alive(pid) for pid in pids)
    assert not list((registry_dir.parent / "logs").glob("*.state.json"))


def test_role_routing_skips_deprecated_and_missing_and_breaks_ties_by_name():
    from modelreg.proxy.routing import Routes
    from modelreg.registry import Snapshot

    entries = [{"name": "b", "roles": ["chat"], "role_priority": {"chat": 5}},
               {"name": "a", "roles": ["chat"], "role_priority": {"chat": 5}},
               {"name": "best", "roles": ["chat"], "role_priority": {"chat": 9}, "deprecated": True},
               {"name": "gone", "roles": ["chat", "vision"], "role_priority": {"chat": 9}, "missing": True},
               {"name": "c", "roles": ["caption"], "role_priority": {"caption": True}}]
    routes = Routes.build(Snapshot(entries, "r"))
    assert routes.resolve("role:chat") == "a"
    assert routes.resolve("role:caption") == "c"  # a boolean priority counts as 0, not 1
    assert routes.for_role("vision") is None


def test_settings_json_is_live_restarting_only_backends_whose_launch_changed(registry_dir, standin_vllm, tmp_path):
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        assert server.chat("m").status_code == 200
        before = server.backend("m")
        set_settings(registry_dir, stop_grace=3)  # no backend's argv or environment changes: nothing restarts
        # the settings change before the reload is recorded (the snapshot rebuilds in between): wait for the record
        wait_for(lambda: (r := server.status()["last_reload"])["ok"] and "settings.json" in r["source"],
                 what="settings.json reread")
        assert server.proxy.pool.settings.stop_grace == 3
        assert server.backend("m")["pid"] == before["pid"]

        moved = tmp_path / "elsewhere" / "vllm"
        moved.parent.mkdir()
        moved.symlink_to(standin_vllm)
        set_settings(registry_dir, executables={"vllm": str(moved)})  # the launch changed: that backend restarts
        after = wait_for(lambda: (b := server.backend("m")) and b["pid"] != before["pid"] and b["ready"] and b,
                         what="restart on the new executable")
        assert after["argv"][0] == str(moved) and not alive(before["pid"])
        assert server.chat("m").status_code == 200

        (registry_dir / "settings.json").write_text('{"stop_grace": ')  # unusable: the last good settings stay
        reload = wait_for(lambda: (r := server.status()["last_reload"]) and not r["ok"] and r, what="refusal")
        assert "settings.json" in reload["error"] and "last good settings" in reload["error"]
        assert server.proxy.pool.settings.executables["vllm"] == str(moved)
        assert server.backend("m")["pid"] == after["pid"] and server.chat("m").status_code == 200
