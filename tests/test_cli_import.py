"""`modelreg import llama-swap` from the command line, and the acceptance test: the example config (llama-swap's
documented format with macros, ${PORT}, env macros, alias objects and groups) imported, and its models started by
the real llama-server with the argv llama-swap's cmd would run."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from modelreg.launch.catalogue import catalogue_for
from modelreg.launch.flags import parse_extra_args
from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.supervisor import Supervisor
from modelreg.registry import Registry
from support import free_port
from support.gui_servers import modelreg
from support.real_backends import BIN, LLAMA_SERVER, clean_llama_env, require
from support.tiny_gguf import write_tiny_gguf

EXAMPLE = Path(__file__).parent / "fixtures" / "llama-swap" / "config.yaml"


@pytest.fixture
def swap(tmp_path):
    """A registry whose llama.cpp is the real llama-server, the tiny GGUF, and the variables the example reads."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "stop_grace": 2, "executables": {"llama.cpp": require(LLAMA_SERVER)}}))
    models = tmp_path / "models"
    models.mkdir()
    write_tiny_gguf(models / "tiny.gguf")
    pinned = tmp_path / "llama-server-ec9e0301"
    pinned.symlink_to(require(LLAMA_SERVER))
    start = free_port()
    env = {**clean_llama_env(), "SWAP_TEST_BIN": str(BIN), "SWAP_TEST_MODELS": str(models),
           "SWAP_TEST_PINNED": str(pinned), "SWAP_TEST_START_PORT": str(start), "SWAP_TEST_TOKEN": "hf_swaptoken"}
    return folder, models, pinned, start, env


def run(folder: Path, env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(modelreg(folder, "import", "llama-swap", *args), capture_output=True, text=True,
                          timeout=120, env=env)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.suffix == ".json"}


def test_dry_run_lists_everything_and_writes_nothing(swap):
    folder, _, _, _, env = swap
    before = files(folder)
    done = run(folder, env, str(EXAMPLE), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert files(folder) == before
    out = done.stdout
    assert "docker-llama: SKIPPED: docker is not a backend modelreg knows" in out
    assert "tiny-pinned: llama.cpp, its file is not here (recorded as missing)" in out
    assert "not carried over: cmdStop:" in out and "not carried over: aliases[1].unlisted:" in out
    assert "config: not carried over: hooks:" in out and "sendLoadingState" not in out
    assert "dry run: 3 of 4 model(s) would be imported; nothing was written" in out
    assert "hf_swaptoken" not in out


def test_an_error_names_file_and_line_and_writes_nothing(swap, tmp_path):
    folder, _, _, _, env = swap
    before = files(folder)
    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE.read_text())
    done = run(folder, {k: v for k, v in env.items() if k != "SWAP_TEST_MODELS"}, str(broken))
    assert done.returncode == 2
    # the models_dir macro holds the env macro; the error is where it is used
    assert f"{broken}:26: models.tiny-chat.cmd: ${{env.SWAP_TEST_MODELS}} names a variable that is not set" \
        in done.stderr
    assert files(folder) == before


@pytest.mark.llama_server
def test_imported_models_start_with_the_argv_llama_swap_would_run(swap):
    folder, models, pinned, start, env = swap
    done = run(folder, env, str(EXAMPLE), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["changed"] and [m["name"] for m in result["models"] if m["skipped"]] == ["docker-llama"]
    written = files(folder)
    assert all(b"hf_swaptoken" not in raw for raw in written.values())
    again = run(folder, env, str(EXAMPLE))
    assert again.returncode == 0 and "already as imported; nothing changed" in again.stdout
    assert files(folder) == written

    registry = Registry(folder)
    chat, second, pinned_entry = (registry.entry(n) for n in ("tiny-chat", "tiny-second", "tiny-pinned"))
    assert chat["model_aliases"] == ["gpt-4o-mini", "tiny-latest"] and chat["display_name"] == "Tiny chat"
    assert chat["backend_config"]["exclusive_group"] == second["backend_config"]["exclusive_group"] == "chat"
    assert chat["backend_config"]["idle_ttl"] == 60 and pinned_entry["backend_config"]["idle_ttl"] == 300
    assert chat["generation_defaults"] == {"temperature": 0.5, "top_p": 0.9}
    assert second["deprecated"] is True and "executable" not in chat["backend_config"]
    assert pinned_entry["backend_config"]["executable"] == str(pinned) and pinned_entry["missing"] is True

    # what llama-swap's cmd runs, written out from the config by hand (ports in model-ID order from startPort:
    # docker-llama, tiny-chat, tiny-second)
    swap_argv = {
        "tiny-chat": [f"{BIN}/llama-server", "--port", str(start + 1), "--model", f"{models}/tiny.gguf",
                      "--ctx-size", "768", "--threads", "1", "--temp", "0.7"],
        "tiny-second": [f"{BIN}/llama-server", "--port", str(start + 2), "-m", f"{models}/tiny.gguf", "-c", "512",
                        "--alias", "tiny-second-served"],
    }
    catalogue = catalogue_for("llama.cpp", require(LLAMA_SERVER))
    supervisor = Supervisor.for_registry(registry)
    os.environ["SWAP_TEST_TOKEN"] = "hf_swaptoken"  # the proxy's environment, where env references are read
    try:
        for name, expected in swap_argv.items():
            backend = supervisor.start_ready(launch_plan(registry.entry(name), registry.settings))
            try:
                ran = Path(f"/proc/{backend.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
                reply = httpx.post(backend.plan.base_url + "/v1/chat/completions", timeout=60, json={
                    "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
                environ = Path(f"/proc/{backend.pid}/environ").read_bytes().decode()
            finally:
                supervisor.stop(backend)
            assert reply.status_code == 200 and reply.json()["choices"]
            assert ran[0] == expected[0]
            flags = flag_values(ran[1:], catalogue)
            wanted = flag_values(expected[1:], catalogue)
            assert flags.pop("--port") == wanted.pop("--port")  # the same port llama-swap gives it
            # the launcher also binds the backend's host (llama-server's default) and names what it serves
            assert flags.pop("--host") == "127.0.0.1"
            assert flags.pop("--alias") == wanted.pop("--alias", registry.entry(name).get("served_model_id"))
            assert flags == wanted
            if name == "tiny-chat":
                assert "\0HF_TOKEN=hf_swaptoken\0" in "\0" + environ and "\0CUDA_VISIBLE_DEVICES=0\0" in environ
    finally:
        os.environ.pop("SWAP_TEST_TOKEN", None)


def flag_values(argv: list[str], catalogue) -> dict[str, tuple[str, ...]]:
    """An argv's flags by canonical name (any spelling, any order) with their values."""
    parsed = parse_extra_args(argv, catalogue)
    assert not parsed.errors, parsed.errors
    return {arg.flag.name: arg.values[0] if len(arg.values) == 1 else arg.values for arg in parsed.args}
