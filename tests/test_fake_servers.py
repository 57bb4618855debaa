"""The test doubles speak the real protocols: the real huggingface_hub and ollama clients work against them."""

import hashlib
import json

import httpx
import ollama
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from support.fake_hub import FakeHub, point_client_at, tiny_safetensors_files
from support.fake_ollama import FakeOllama
from support.tiny_gguf import write_tiny_gguf

REPO = "tiny-org/tiny-llama"


@pytest.fixture(scope="module")
def tiny_files():
    files = tiny_safetensors_files(shards=2)
    files["nested/extra/notes.txt"] = b"hello"
    return files


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


@pytest.fixture
def hub(monkeypatch, tmp_path, tiny_files):
    with FakeHub(page_size=3) as server:
        server.add_repo(REPO, tiny_files)
        point_client_at(server, monkeypatch, tmp_path / "hf-home")
        yield server


def test_model_info_reports_commit_files_and_configs(hub, tiny_files):
    info = HfApi().model_info(REPO, files_metadata=True)
    repo = hub.repos[REPO]
    assert info.sha == repo.commit and len(info.sha) == 40
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes == {path: len(data) for path, data in tiny_files.items()}
    shard = next(s for s in info.siblings if s.rfilename.endswith("00001-of-00002.safetensors"))
    assert shard.lfs.sha256 == hashlib.sha256(tiny_files[shard.rfilename]).hexdigest()
    assert info.config["model_type"] == "llama"
    assert "{% for message in messages %}" in info.config["tokenizer_config"]["chat_template"]
    assert HfApi().model_info(REPO, revision=repo.commit).sha == repo.commit


def test_tree_listing_is_paginated_and_recursive(hub, tiny_files):
    entries = list(HfApi().list_repo_tree(REPO, recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    assert set(files) == set(tiny_files)
    assert {e.path for e in entries if isinstance(e, RepoFolder)} == {"nested", "nested/extra"}
    assert files["config.json"].lfs is None and files["config.json"].size == len(tiny_files["config.json"])
    pages = [r for r in hub.requests if "/tree/" in r.path]
    assert len(pages) == -(-len(entries) // hub.page_size) > 1
    top = {e.path for e in HfApi().list_repo_tree(REPO)}
    assert "nested" in top and "nested/extra/notes.txt" not in top


def test_hf_hub_download_git_file_and_lfs_file_through_the_cdn(hub, tiny_files, tmp_path):
    config_path = hf_hub_download(REPO, "config.json", local_dir=tmp_path / "out")
    assert open(config_path, "rb").read() == tiny_files["config.json"]
    shard = "model-00002-of-00002.safetensors"
    shard_path = hf_hub_download(REPO, shard, local_dir=tmp_path / "out")
    assert open(shard_path, "rb").read() == tiny_files[shard]
    cdn_port = int(hub.cdn.rsplit(":", 1)[1])
    assert [r.port for r in hub.downloads_of(shard)] == [cdn_port]
    cached = hf_hub_download(REPO, "config.json")  # the cache layout works too
    assert "models--tiny-org--tiny-llama/snapshots/" + hub.repos[REPO].commit in cached


def test_snapshot_download_fetches_every_file_or_the_chosen_ones(hub, tiny_files, tmp_path):
    folder = snapshot_download(REPO, local_dir=tmp_path / "all")
    for path, data in tiny_files.items():
        assert (tmp_path / "all" / path).read_bytes() == data
    assert folder == str((tmp_path / "all").resolve())
    snapshot_download(REPO, local_dir=tmp_path / "some", allow_patterns=["*.json"])
    got = {p.name for p in (tmp_path / "some").iterdir() if p.is_file()}
    assert got == {p for p in tiny_files if p.endswith(".json")}


def test_a_cut_download_resumes_with_a_range_request(hub, tiny_files, tmp_path, monkeypatch):
    # The client writes the body in DOWNLOAD_CHUNK_SIZE pieces (10 MB) and resumes after the last whole piece;
    # a small piece size lets a tiny file show it.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 512)
    shard = "model-00001-of-00002.safetensors"
    hub.cut(shard, after_bytes=1000)
    snapshot_download(REPO, local_dir=tmp_path / "out")
    assert (tmp_path / "out" / shard).read_bytes() == tiny_files[shard]
    ranges = [r.headers.get("range") for r in hub.downloads_of(shard)]
    assert ranges == [None, "bytes=512-"]
    assert hub.bytes_served[shard] == len(tiny_files[shard]) + 1000 - 512


def test_an_interrupted_snapshot_is_completed_by_the_next_run_without_refetching(hub, tiny_files, tmp_path):
    shard = "model-00002-of-00002.safetensors"
    hub.cut(shard, after_bytes=500)
    hub.fail(shard, status=500)  # the retry after the cut fails too: the run gives up
    with pytest.raises(HfHubHTTPError):
        snapshot_download(REPO, local_dir=tmp_path / "out", max_workers=1)
    assert not (tmp_path / "out" / shard).exists()
    done_before = {p for p in tiny_files if (tmp_path / "out" / p).exists()}
    assert done_before
    snapshot_download(REPO, local_dir=tmp_path / "out")
    for path, data in tiny_files.items():
        assert (tmp_path / "out" / path).read_bytes() == data
    for path in done_before:
        assert len(hub.downloads_of(path)) == 1, path


def test_missing_repo_revision_and_file_raise_the_clients_own_errors(hub, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("nobody/nothing", local_dir=tmp_path / "x")
    with pytest.raises(RevisionNotFoundError):
        HfApi().model_info(REPO, revision="v9")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", local_dir=tmp_path / "y")


def test_gated_repo_needs_a_granted_token(hub, tiny_files, tmp_path):
    hub.add_repo("corp/gated", {"config.json": tiny_files["config.json"]}, gated="manual", granted_tokens={"hf_ok"})
    assert HfApi().model_info("corp/gated").gated == "manual"
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("corp/gated", "config.json", local_dir=tmp_path / "a")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as refused:
        hf_hub_download("corp/gated", "config.json", local_dir=tmp_path / "b", token="hf_other")
    assert refused.value.response.status_code == 403
    path = hf_hub_download("corp/gated", "config.json", local_dir=tmp_path / "c", token="hf_ok")
    assert open(path, "rb").read() == tiny_files["config.json"]


def test_a_traversal_file_name_in_the_tree_is_served_and_refused_by_the_client(hub, tmp_path):
    hub.add_repo("evil/repo", {"config.json": b"{}", "../../evil.txt": b"pwned"})
    paths = {e.path for e in HfApi().list_repo_tree("evil/repo", recursive=True) if isinstance(e, RepoFile)}
    assert "../../evil.txt" in paths
    with pytest.raises(ValueError, match=r"\.\."):
        hf_hub_download("evil/repo", "../../evil.txt", local_dir=tmp_path / "a" / "b")
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_model_info_of_a_gguf_repo_reports_architecture_and_template(monkeypatch, tmp_path, gguf_bytes):
    with FakeHub() as server:
        server.add_repo("tiny-org/tiny-gguf", {"tiny-Q8_0.gguf": gguf_bytes, "README.md": b"# gguf"})
        point_client_at(server, monkeypatch, tmp_path / "hf-home")
        info = HfApi().model_info("tiny-org/tiny-gguf")
        assert info.gguf["architecture"] == "llama"
        assert info.gguf["context_length"] == 2048
        assert "add_generation_prompt" in info.gguf["chat_template"]


# --- Ollama -------------------------------------------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path, gguf_bytes):
    with FakeOllama(tmp_path / "models") as server:
        server.add_model(
            "tiny:q8",
            gguf_bytes,
            template="{{ if .Tools }}tools{{ end }}{{ .Prompt }}",
            params={"stop": ["<|end|>"], "num_ctx": 2048},
            license_text="MIT",
        )
        yield server


def test_ollama_pull_streams_progress_and_writes_the_store(daemon, gguf_bytes):
    client = ollama.Client(host=daemon.host)
    events = list(client.pull("tiny:q8", stream=True))
    assert events[0].status == "pulling manifest" and events[-1].status == "success"
    model_digest = "sha256:" + hashlib.sha256(gguf_bytes).hexdigest()
    model_events = [e for e in events if e.digest == model_digest]
    assert model_events[-1].completed == model_events[-1].total == len(gguf_bytes)
    assert [e.completed for e in model_events] == sorted(e.completed for e in model_events)

    manifest_path = daemon.models_dir / "manifests/registry.ollama.ai/library/tiny/q8"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["schemaVersion"] == 2
    for blob in [manifest["config"], *manifest["layers"]]:
        data = (daemon.models_dir / "blobs" / blob["digest"].replace(":", "-")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"] and len(data) == blob["size"]
    assert manifest["layers"][0] == {
        "mediaType": "application/vnd.ollama.image.model", "digest": model_digest, "size": len(gguf_bytes)
    }
    assert not list((daemon.models_dir / "blobs").glob("*-partial"))


def test_ollama_show_tags_and_version_describe_the_pulled_model(daemon):
    client = ollama.Client(host=daemon.host)
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("tiny:q8")
    assert missing.value.status_code == 404
    client.pull("tiny:q8")
    shown = client.show("tiny:q8")
    assert shown.details.family == "llama" and shown.details.format == "gguf"
    assert shown.modelinfo["llama.context_length"] == 2048
    assert "tools" in shown.capabilities and "num_ctx" in shown.parameters
    assert [m.model for m in client.list().models] == ["tiny:q8"]
    assert httpx.get(f"{daemon.host}/api/version").json() == {"version": daemon.version}


def test_ollama_unknown_model_and_a_dropped_pull(daemon):
    client = ollama.Client(host=daemon.host)
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        list(client.pull("nope:1b", stream=True))
    daemon.cut_pull_after(3)
    with pytest.raises(httpx.RemoteProtocolError):
        list(client.pull("tiny:q8", stream=True))
    assert not (daemon.models_dir / "manifests/registry.ollama.ai/library/tiny/q8").exists()
    daemon.cut_pull_after(None)
    assert list(client.pull("tiny:q8", stream=True))[-1].status == "success"
