"""Hugging Face downloads through the real huggingface_hub client against the loopback Hub: analysis, progress,
resume, cancel, refusals, and registration (discovered, stubbed, launch-testable)."""

import json
import threading
from pathlib import Path

import pytest

from modelreg.download import hub as dl
from modelreg.download.hub import analyse_hf_repo, download_hf, gguf_quantization, select_files
from modelreg.download.progress import DownloadCancelled, DownloadError, DownloadProgress
from modelreg.errors import BadInput
from modelreg.registry import Registry
from support.fake_hub import FakeHub, point_client_at, tiny_safetensors_files
from support.tiny_gguf import write_tiny_gguf

LLAMA = "tiny-org/tiny-llama"
GGUF = "tiny-org/tiny-llama-GGUF"


@pytest.fixture(scope="module")
def llama_files():
    return tiny_safetensors_files(shards=2)


@pytest.fixture(scope="module")
def gguf_files(tiny_model, tmp_path_factory):
    other = write_tiny_gguf(tmp_path_factory.mktemp("other") / "other.gguf", seed=1).read_bytes()
    return {"tiny-llama-F32.gguf": tiny_model.read_bytes(), "tiny-llama-Q8_0.gguf": other + b"\0" * 64,
            "README.md": b"# tiny llama GGUF\n", "params.json": b'{"temperature": 0.7}'}


@pytest.fixture
def hub(monkeypatch, tmp_path, llama_files, gguf_files):
    with FakeHub() as server:
        server.add_repo(LLAMA, llama_files)
        server.add_repo(GGUF, gguf_files)
        point_client_at(server, monkeypatch, tmp_path / "hf-home")
        yield server


@pytest.fixture
def models(tmp_path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def registry(tmp_path, models) -> Registry:
    config = tmp_path / "configs"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"model_roots": [str(models)], "port_range": [24100, 24199]}))
    return Registry(config)


def folder_of(models: Path, repo_id: str) -> Path:
    return models / repo_id


# ---- analysis ---------------------------------------------------------------------------------------------------

def test_analysis_of_a_safetensors_repo(hub, llama_files):
    analysis = analyse_hf_repo(LLAMA)
    assert analysis.commit == hub.repos[LLAMA].commit
    assert analysis.formats == ["safetensors"]
    assert analysis.has_config and analysis.has_tokenizer
    assert analysis.chat_template_sources == ["tokenizer_config.json"]
    assert [v.key for v in analysis.variants] == ["safetensors"]
    variant = analysis.recommended
    assert sorted(variant.weight_files) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert variant.size_bytes == sum(len(data) for data in llama_files.values()) == analysis.total_size
    assert variant.chat_template and not analysis.unsafe_files


def test_analysis_of_a_gguf_repo_lists_each_quantization_with_its_size(hub, gguf_files):
    analysis = analyse_hf_repo(GGUF)
    assert analysis.formats == ["gguf"] and not analysis.has_config
    assert analysis.chat_template_sources == ["gguf"]
    by_key = {v.key: v for v in analysis.variants}
    assert set(by_key) == {"F32", "Q8_0"}
    support = len(gguf_files["README.md"]) + len(gguf_files["params.json"])
    assert by_key["F32"].size_bytes == len(gguf_files["tiny-llama-F32.gguf"]) + support
    assert by_key["Q8_0"].files == ["tiny-llama-Q8_0.gguf", "README.md", "params.json"]
    assert analysis.recommended.key == "Q8_0"  # the preferred quantization when the repo has it
    assert analysis.variant("f32") is by_key["F32"]
    with pytest.raises(BadInput, match="choose one of: F32, Q8_0"):
        analysis.variant("Q2_K")


@pytest.mark.parametrize("name, quant", [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"), ("qwen2.5-7b-instruct-q5_k_m-00001-of-00002.gguf", "Q5_K_M"),
    ("Q4_K_M/model-00001-of-00003.gguf", "Q4_K_M"), ("gemma-3-27b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("model-IQ4_XS.gguf", "IQ4_XS"), ("ggml-model-f16.gguf", "F16"), ("model.gguf", None)])
def test_gguf_quantization_from_file_names(name, quant):
    assert gguf_quantization(name) == quant


@pytest.mark.parametrize("repo_id", ["../etc", "org/..", "org/name/extra", "org", "/abs/name", "org/na me",
                                     "org/a--b", ""])
def test_bad_repo_ids_are_refused_before_any_request(hub, repo_id):
    with pytest.raises(BadInput, match="not a Hugging Face repo id"):
        analyse_hf_repo(repo_id)
    assert hub.requests == []


def test_unknown_repo_and_revision_say_what_to_check(hub):
    with pytest.raises(BadInput, match="'nobody/nothing' not found.*hf auth login"):
        analyse_hf_repo("nobody/nothing")
    with pytest.raises(BadInput, match="no revision 'v9'"):
        analyse_hf_repo(LLAMA, "v9")


def test_include_globs_pick_weights_and_keep_the_support_files(hub):
    analysis = analyse_hf_repo(GGUF)
    paths = [f.path for f in select_files(analysis, include=["*F32*"])]
    assert paths == ["README.md", "params.json", "tiny-llama-F32.gguf"]
    with pytest.raises(BadInput, match="no file of tiny-org/tiny-llama-GGUF matches --include \\*Q2\\*"):
        select_files(analysis, include=["*Q2*"])


# ---- downloading and registering --------------------------------------------------------------------------------

def test_full_download_is_discovered_stubbed_and_rebuilt(hub, registry, models, llama_files):
    seen = []
    progress = DownloadProgress(listeners=[lambda p: seen.append(p.snapshot())])
    result = download_hf(registry, LLAMA, progress=progress)

    folder = folder_of(models, LLAMA)
    assert result.folder == str(folder)
    for path, data in llama_files.items():
        assert (folder / path).read_bytes() == data
    marker = json.loads((folder / dl.MARKER_FILE).read_text())
    assert marker["repo_id"] == LLAMA and marker["commit"] == hub.repos[LLAMA].commit
    assert not (models / dl.STAGING_DIR).exists()

    [name] = result.names
    assert result.stubbed == [name]
    discovered = next(e for e in registry.discovered_entries() if e["name"] == name)
    assert discovered["backend_config"]["model_path"] == str(folder)
    assert discovered["metadata"]["format"] == "safetensors"
    stub = next(e for e in registry.curated_entries() if e["name"] == name)
    assert stub["metadata"]["_config_needed"] is True
    assert stub["backend"] == "vllm" and 24100 <= stub["backend_config"]["port"] <= 24199
    merged = registry.entry(name)  # in the rebuilt snapshot
    assert merged["backend"] == "vllm"
    assert any(item.startswith("roles: not set") for item in result.to_decide[name])
    assert any("_config_needed" in item for item in result.to_decide[name])

    total = sum(len(d) for d in llama_files.values())
    downloading = [s for s in seen if s["phase"] == "downloading"]
    assert [s["bytes_done"] for s in downloading] == sorted(s["bytes_done"] for s in downloading)
    assert downloading[-1]["bytes_done"] == total == downloading[-1]["bytes_total"]
    assert downloading[-1]["files_done"] == len(llama_files)
    phases = [s["phase"] for s in seen]
    assert phases.index("downloading") < phases.index("registering") < phases.index("done")


def test_running_a_finished_download_again_fetches_nothing(hub, registry, llama_files):
    first = download_hf(registry, LLAMA)
    gets = len([r for r in hub.requests if r.method == "GET" and "x-file-path" in r.headers])
    second = download_hf(registry, LLAMA)
    assert second.names == first.names and second.stubbed == []
    assert len([r for r in hub.requests if r.method == "GET" and "x-file-path" in r.headers]) == gets


def test_a_dropped_connection_resumes_with_a_range_request(hub, registry, models, llama_files, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)  # resume granularity (10 MB by default)
    shard = "model-00001-of-00002.safetensors"
    hub.cut(shard, after_bytes=5000)
    download_hf(registry, LLAMA)
    assert (folder_of(models, LLAMA) / shard).read_bytes() == llama_files[shard]
    assert [r.headers.get("range") for r in hub.downloads_of(shard)] == [None, "bytes=4096-"]


def test_a_failed_download_registers_nothing_and_the_next_run_resumes(hub, registry, models, llama_files):
    shard = "model-00002-of-00002.safetensors"
    hub.cut(shard, after_bytes=100)
    hub.fail(shard, status=500)  # the client's own retry fails too
    with pytest.raises(DownloadError, match="network or server failure.*running the same download again resumes"):
        download_hf(registry, LLAMA, max_workers=1)
    assert registry.discovered_entries() == [] and registry.curated_entries() == []
    assert not folder_of(models, LLAMA).exists()  # a scan of the models root sees nothing half-downloaded
    staging = models / dl.STAGING_DIR / LLAMA
    finished = {p for p in llama_files if (staging / p).is_file()}
    assert finished and shard not in finished

    result = download_hf(registry, LLAMA)
    assert len(result.names) == 1
    for path in finished:
        assert len(hub.downloads_of(path)) == 1, f"{path} was fetched again"
    for path, data in llama_files.items():
        assert (folder_of(models, LLAMA) / path).read_bytes() == data


def test_cancel_stops_the_download_and_keeps_finished_files(hub, registry, models, llama_files):
    shard = "model-00001-of-00002.safetensors"
    pause = hub.hold(shard, after_bytes=2000)
    progress = DownloadProgress()
    outcome = {}

    def run():
        try:
            download_hf(registry, LLAMA, progress=progress, max_workers=1)
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    assert pause.reached.wait(20)
    progress.cancel()
    pause.release.set()
    worker.join(30)
    assert isinstance(outcome.get("error"), DownloadCancelled)
    assert registry.discovered_entries() == []
    assert not folder_of(models, LLAMA).exists()
    assert download_hf(registry, LLAMA).names  # the next run finishes it


def test_a_traversal_file_name_refuses_the_whole_repo(hub, registry, models, tmp_path):
    hub.add_repo("evil/repo", {"config.json": b"{}", "model.safetensors": b"x" * 10, "../../evil.txt": b"pwned"})
    with pytest.raises(BadInput, match=r"refusing to download evil/repo.*\.\./\.\./evil\.txt.*nothing was downloaded"):
        download_hf(registry, "evil/repo")
    assert hub.downloads_of("../../evil.txt") == [] and hub.downloads_of("config.json") == []
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    assert registry.discovered_entries() == []


def test_a_symlinked_folder_leading_outside_the_root_is_refused(hub, registry, models, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    models.mkdir()
    (models / "tiny-org").symlink_to(outside)
    with pytest.raises(BadInput, match="leads outside the models root"):
        download_hf(registry, LLAMA)
    assert list(outside.iterdir()) == []


def test_not_enough_disk_space_is_refused_before_fetching(hub, registry, monkeypatch):
    monkeypatch.setattr(dl, "free_space", lambda path: 1000)
    with pytest.raises(DownloadError, match=r"needs .* only 1000 B is free"):
        download_hf(registry, LLAMA)
    assert [r for r in hub.requests if r.method == "GET" and "x-file-path" in r.headers] == []


def test_a_full_disk_during_the_download_says_so():
    import errno

    with pytest.raises(DownloadError, match="disk full while downloading org/name; the files finished so far"):
        with dl.hub_errors("org/name", None, folder=Path("/models/.modelreg-downloads/org/name")):
            raise OSError(errno.ENOSPC, "No space left on device")


def test_gated_repo_without_a_token_says_how_to_log_in(hub, registry, models, llama_files):
    hub.add_repo("corp/gated", llama_files, gated="manual", granted_tokens={"hf_granted"})
    analysis = analyse_hf_repo("corp/gated")
    assert analysis.gated == "manual" and "hf auth login" in analysis.login_hint()
    with pytest.raises(DownloadError, match="gated repo.*hf auth login.*HF_TOKEN"):
        download_hf(registry, "corp/gated")
    assert registry.discovered_entries() == [] and not folder_of(models, "corp/gated").exists()
    with pytest.raises(DownloadError, match="no access yet: request access"):
        download_hf(registry, "corp/gated", token="hf_other")
    assert download_hf(registry, "corp/gated", token="hf_granted").names


def test_a_second_variant_lands_beside_the_first(hub, registry, models, gguf_files):
    hub.add_repo("tiny-org/docs-GGUF", {**gguf_files, "docs/usage/run.md": b"# run it"})
    first = download_hf(registry, "tiny-org/docs-GGUF", variant="Q8_0")
    second = download_hf(registry, "tiny-org/docs-GGUF", variant="F32")
    folder = folder_of(models, "tiny-org/docs-GGUF")
    assert {p.name for p in folder.glob("*.gguf")} == {"tiny-llama-F32.gguf", "tiny-llama-Q8_0.gguf"}
    marker = json.loads((folder / dl.MARKER_FILE).read_text())
    assert set(marker["files"]) == {"README.md", "docs/usage/run.md", "params.json", "tiny-llama-F32.gguf",
                                    "tiny-llama-Q8_0.gguf"}
    assert (folder / "docs/usage/run.md").read_bytes() == b"# run it"
    assert len(set(first.names + second.names)) == 2
    assert len(hub.downloads_of("README.md")) == 1  # kept from the first variant
    assert not (models / dl.STAGING_DIR).exists()


@pytest.mark.server
def test_a_downloaded_gguf_passes_the_launch_test_on_the_real_server(hub, registry, models, tmp_path):
    from modelreg.launch.running.launch_test import launch_test

    result = download_hf(registry, GGUF, variant="F32")
    [name] = result.names
    stub = next(e for e in registry.curated_entries() if e["name"] == name)
    # llama-server is not installed here, llama-cpp-python is: the stub suggests it
    assert stub["backend"] == "llama-cpp-python" and stub["metadata"]["_config_needed"] is True
    registry.apply_curated(name, {"backend": "llama-cpp-python", "backend_config.extra_args": ["--n_ctx", "512"]})
    entry = registry.entry(name)
    assert entry["backend_config"]["model_path"] == str(folder_of(models, GGUF) / "tiny-llama-F32.gguf")
    assert "_config_needed" not in entry.get("metadata", {})
    outcome = launch_test(entry, registry.settings, tmp_path / "logs", timeout=120, max_tokens=8)
    assert outcome.ok, (outcome.error, outcome.log_tail)
    assert outcome.reply.strip()


def test_a_new_commit_replaces_the_files_in_place(hub, registry, models, gguf_files):
    hub.add_repo("tiny-org/docs-GGUF", {**gguf_files, "docs/usage/run.md": b"# run it"})
    [name] = download_hf(registry, "tiny-org/docs-GGUF", variant="F32").names
    hub.add_repo("tiny-org/docs-GGUF", {**gguf_files, "docs/usage/run.md": b"# run it, version 2"})
    again = download_hf(registry, "tiny-org/docs-GGUF", variant="F32")
    folder = folder_of(models, "tiny-org/docs-GGUF")
    assert (folder / "docs/usage/run.md").read_bytes() == b"# run it, version 2"
    assert json.loads((folder / dl.MARKER_FILE).read_text())["commit"] == hub.repos["tiny-org/docs-GGUF"].commit
    assert again.names == [name] and again.stubbed == []
    assert not (models / dl.STAGING_DIR).exists()
