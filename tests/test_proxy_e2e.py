"""`modelreg proxy` as its own process in front of real llama-cpp-python servers with the tiny GGUF."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, dumps
from support import chat_body, free_port, wait_for
from support.gui_servers import ProxyProcess
from support.tiny_gguf import tiny_entry

pytestmark = pytest.mark.server
REPO = Path(__file__).resolve().parents[1]
MODELS = ("tiny-a", "tiny-b")


def modelreg(config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


@pytest.fixture(scope="module")
def proxy(tiny_model, tmp_path_factory):
    """One proxy process for the module; two chat models and an embedding model on the same tiny GGUF."""
    folder = tmp_path_factory.mktemp("proxy-e2e")
    config_dir = folder / "configs"
    config_dir.mkdir()
    entries = [tiny_entry(tiny_model, name=name, model_aliases=[f"org/{name}"]) for name in MODELS]
    entries.append(tiny_entry(tiny_model, name="tiny-embed", extra_args=["--n_ctx", "512", "--embedding", "true"]))
    (config_dir / CURATED_FILE).write_bytes(dumps(entries))
    (config_dir / "settings.json").write_text(json.dumps({"log_dir": str(folder / "logs"), "stop_grace": 3}))
    server = ProxyProcess(config_dir, free_port(), folder / "proxy.log")
    pids: set[int] = set()
    server.seen_pids = pids
    try:
        yield server
        pids.update(b["pid"] for b in server.status()["backends"])
    finally:
        server.stop()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def test_first_request_starts_the_model_and_streams_the_reply(proxy):
    assert proxy.backend("tiny-a") is None
    events = []
    with proxy.http.stream("POST", "/v1/chat/completions", json=chat_body("tiny-a", 6, stream=True)) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["x-modelreg-model"] == "tiny-a"
        for line in reply.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len(chunks) >= 6 and text.isascii() and text.strip()
    assert {c["model"] for c in chunks} == {"tiny-a"}

    backend = proxy.backend("tiny-a")
    proxy.seen_pids.add(backend["pid"])
    assert backend["ready"] and not backend["stale"]
    assert backend["argv"][1:3] == ["-m", "llama_cpp.server"]
    assert backend["argv"][-2:] == ["--n_ctx", "512"]
    assert cmdline(backend["pid"]) == backend["argv"]


def test_aliases_completions_and_embeddings_reach_their_models(proxy):
    reply = proxy.http.post("/v1/chat/completions", json=chat_body("org/tiny-b", 2))
    assert reply.status_code == 200 and reply.json()["model"] == "tiny-b"
    completion = proxy.http.post("/v1/completions", json={"model": "tiny-a", "prompt": "hi", "max_tokens": 2})
    assert completion.status_code == 200 and completion.json()["object"] == "text_completion"
    embedding = proxy.http.post("/v1/embeddings", json={"model": "tiny-embed", "input": "hello"})
    assert embedding.status_code == 200, embedding.text
    vector = embedding.json()["data"][0]["embedding"]
    assert len(vector[0] if isinstance(vector[0], list) else vector) == 64  # the tiny model's width (per token)
    listed = {m["id"]: m for m in proxy.http.get("/v1/models").json()["data"]}
    assert set(listed) == {"tiny-a", "tiny-b", "tiny-embed"} and listed["tiny-b"]["aliases"] == ["org/tiny-b"]
    proxy.seen_pids.update(b["pid"] for b in proxy.status()["backends"])


def test_modelreg_set_is_served_and_restarts_only_that_model(proxy):
    for name in MODELS:
        assert proxy.http.post("/v1/chat/completions", json=chat_body(name)).status_code == 200
    before = {b["name"]: b for b in proxy.status()["backends"]}
    proxy.seen_pids.update(b["pid"] for b in before.values())

    result = modelreg(proxy.config_dir, "set", "tiny-a", "backend_config.extra_args", '["--n_ctx", "256"]')
    assert result.returncode == 0, result.stderr
    written = time.monotonic()
    revision = Registry(proxy.config_dir).snapshot().revision
    wait_for(lambda: proxy.status()["revision"] == revision, what="the new revision served")  # its speed: make bench
    print(f"\nnew revision served {(time.monotonic() - written) * 1000:.0f} ms after `modelreg set` returned")

    restarted = wait_for(lambda: (b := proxy.backend("tiny-a")) and b["pid"] != before["tiny-a"]["pid"]
                         and b["ready"] and b, what="tiny-a restarted", timeout=30)
    proxy.seen_pids.add(restarted["pid"])
    assert not restarted["stale"] and restarted["revision"] == revision
    args = cmdline(restarted["pid"])
    assert args[args.index("--n_ctx") + 1] == "256" and args == restarted["argv"]
    assert not psutil.pid_exists(before["tiny-a"]["pid"])
    untouched = proxy.backend("tiny-b")
    assert (untouched["pid"], untouched["started_at"]) == (before["tiny-b"]["pid"], before["tiny-b"]["started_at"])
    assert not untouched["stale"]
    assert proxy.http.post("/v1/chat/completions", json=chat_body("tiny-a")).status_code == 200
    restarts = [e for e in proxy.status()["events"] if e["event"] == "restarted"]
    assert [e["model"] for e in restarts] == ["tiny-a"]


def test_invalid_json_keeps_the_last_good_registry_until_fixed(proxy):
    curated = proxy.config_dir / CURATED_FILE
    good_bytes = curated.read_bytes()
    good = proxy.status()
    curated.write_text('[{"name": "tiny-a",,}]\n')
    status = wait_for(lambda: (s := proxy.status())["last_reload"]["ok"] is False and s, what="reload error",
                      timeout=30)
    assert status["revision"] == good["revision"]
    assert f"{curated}:1:" in status["last_reload"]["error"]
    for name in MODELS:
        reply = proxy.http.post("/v1/chat/completions", json=chat_body(name))
        assert reply.status_code == 200 and reply.headers["x-modelreg-revision"] == good["revision"]

    curated.write_bytes(good_bytes)
    status = wait_for(lambda: (s := proxy.status())["last_reload"]["ok"] and s, what="recovery", timeout=30)
    assert status["revision"] == good["revision"] and status["pid"] == good["pid"]
    assert [b["pid"] for b in status["backends"]] == [b["pid"] for b in good["backends"]]


def test_concurrent_load_from_a_second_process(proxy):
    result = subprocess.run([sys.executable, "-m", "bench.proxy", "load", proxy.url, "--models", *MODELS,
                             "--total", "200", "--concurrency", "20"], cwd=REPO, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    print(f"\nload through the proxy: {json.dumps(figures)}")
    assert (figures["ok"], figures["failed"], figures["misrouted"], figures["duplicate_ids"]) == (200, 0, 0, 0)


def test_start_failure_through_the_real_server_explains_itself(proxy, tiny_model):
    # an unknown flag never reaches the server: the plan is refused with the flag's name
    Registry(proxy.config_dir).set_value("tiny-b", "backend_config.extra_args", ["--n_ctx", "512", "--no_such", "1"])
    reply = wait_for(lambda: (r := proxy.http.post("/v1/chat/completions", json=chat_body("tiny-b")))
                     .status_code == 503 and r, what="refused start", timeout=30)
    assert "`--no_such` is not a flag of llama_cpp.server" in json.dumps(reply.json())
    # a value only the server can judge fails the start, and the 503 says how
    Registry(proxy.config_dir).set_value("tiny-b", "backend_config.extra_args", ["--n_ctx", "many"])
    admin = {"Authorization": f"Bearer {proxy.token}"}  # the argv and the log tail are the admin's
    reply = wait_for(lambda: (r := proxy.http.post("/v1/chat/completions", json=chat_body("tiny-b"), headers=admin))
                     .status_code == 503 and "exit_code" in r.json()["error"] and r, what="failed start", timeout=30)
    error = reply.json()["error"]
    assert error["argv"][-2:] == ["--n_ctx", "many"] and error["exit_code"] == 2
    assert "argument --n_ctx: invalid int value: 'many'" in error["log_tail"]
    Registry(proxy.config_dir).set_value("tiny-b", "backend_config.extra_args", ["--n_ctx", "512"])
    wait_for(lambda: proxy.http.post("/v1/chat/completions", json=chat_body("tiny-b")).status_code == 200,
             what="recovered start", timeout=30)
    proxy.seen_pids.update(b["pid"] for b in proxy.status()["backends"])
