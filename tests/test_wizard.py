"""The download wizard's state machine, driven as the GUI page drives it, against the loopback Hub and Ollama."""

import json
import time

import pytest

from modelreg.errors import BadInput
from modelreg.jobs import JobRegistry
from modelreg.registry import Registry
from modelreg.views import wizard as wz
from modelreg.views.wizard import Wizard, WizardStepError
from support.fake_hub import FakeHub, point_client_at
from support.fake_ollama import FakeOllama

GGUF = "tiny-org/tiny-llama-GGUF"


@pytest.fixture
def hub(monkeypatch, tmp_path, tiny_model):
    with FakeHub() as server:
        server.add_repo(GGUF, {"tiny-llama-F32.gguf": tiny_model.read_bytes(),
                               "tiny-llama-Q8_0.gguf": tiny_model.read_bytes() + b"\0" * 32, "README.md": b"# tiny"})
        point_client_at(server, monkeypatch, tmp_path / "hf-home")
        yield server


@pytest.fixture
def registry(tmp_path) -> Registry:
    config = tmp_path / "configs"
    config.mkdir()
    settings = {"model_roots": [str(tmp_path / "models")], "proxy_url": "http://127.0.0.1:9"}
    (config / "settings.json").write_text(json.dumps(settings))
    return Registry(config)


@pytest.fixture
def wizard(registry) -> Wizard:
    return Wizard(registry, JobRegistry())


def poll_until_moved(wizard: Wizard, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = wizard.poll()
        if status["state"] != "running":
            return status
        time.sleep(0.02)
    raise AssertionError("the download did not finish")


def test_steps_refuse_actions_out_of_order(wizard, hub):
    with pytest.raises(WizardStepError, match="enter a repo id or an Ollama name first"):
        wizard.start_download()
    with pytest.raises(WizardStepError, match="belongs to the download step; the wizard is at the source step"):
        wizard.poll()
    with pytest.raises(WizardStepError, match="belongs to the configure step"):
        wizard.save()
    with pytest.raises(WizardStepError, match="cannot go back from the source step"):
        wizard.back()
    with pytest.raises(BadInput, match="source must be one of hf, ollama"):
        wizard.analyse("s3", "x")
    with pytest.raises(WizardStepError, match="analyse a Hugging Face repo before choosing"):
        wizard.choose("Q8_0")


@pytest.mark.server
def test_from_repo_id_to_a_passing_launch_test(wizard, registry, hub, tmp_path):
    analysis = wizard.analyse("hf", GGUF)
    assert {v.key for v in analysis.variants} == {"F32", "Q8_0"} and wizard.variant == "Q8_0"
    wizard.choose("f32")
    plan = wizard.plan()
    assert plan["folder"] == str(tmp_path / "models" / GGUF) and plan["fits"]
    assert plan["files"] == ["tiny-llama-F32.gguf", "README.md"]

    wizard.start_download()
    assert wizard.step == wz.DOWNLOAD
    status = poll_until_moved(wizard)
    assert status["state"] == "done" and wizard.step == wz.REVIEW
    assert status["bytes_done"] == status["bytes_total"] == plan["size_bytes"]
    phases = [line.split(":")[0] for line in wizard.job.lines()]  # the job's log: one line per phase, for the GUI
    assert phases == ["analysing", "downloading", "verifying", "registering", "done"]

    review = wizard.review()
    assert review["discovered"]["metadata"]["format"] == "gguf"
    curated = review["curated"]
    assert curated["metadata"]["_config_needed"] is True and curated["backend"] == "llama-cpp-python"  # installed
    assert review["merged"]["backend_config"]["model_path"].endswith("tiny-llama-F32.gguf")
    assert any("roles: not set" in item for item in review["to_decide"])
    assert review["fit"]["native_context"] == 2048 and review["fit"]["fits_native"]  # for the profile's GPU

    wizard.configure_step()
    assert {f.spec.path for f in wizard.fields()} >= {"backend", "backend_config.extra_args"}
    errors = wizard.edit({"backend": "llama-cpp-python", "backend_config.extra_args": "--n_ctx 512"})
    assert errors == {}
    preview = wizard.preview()
    assert preview["error"] is None and "llama_cpp.server" in preview["argv"]
    argv = preview["argv"]
    assert argv[argv.index("--n_ctx") + 1] == "512"
    assert not registry.entry(wizard.name)["backend_config"].get("extra_args")  # nothing written before save

    message = wizard.save()
    assert "proxy not reachable" in message and wizard.step == wz.LAUNCH_TEST
    assert not wizard.report.reachable and wizard.report.expected_revision == registry.snapshot().revision
    saved = registry.entry(wizard.name)
    assert saved["backend"] == "llama-cpp-python" and "_config_needed" not in saved.get("metadata", {})

    job = wizard.start_launch_test(timeout=120, max_tokens=8)
    assert wizard.jobs.latest("launch-test", wizard.name) is job  # the Launch test page sees the same run
    deadline = time.monotonic() + 150
    while (status := wizard.poll_launch_test())["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status["result"]["ok"], status
    assert wizard.step == wz.FINISHED


def test_edit_errors_and_facts_are_reported_per_field(wizard, hub):
    wizard.analyse("hf", GGUF)
    wizard.start_download()
    poll_until_moved(wizard)
    wizard.configure_step()
    errors = wizard.edit({"backend_config.port": "eighty"}, extra={"size_bytes": 1})
    assert set(errors) == {"backend_config.port", "size_bytes"} and "fact" in errors["size_bytes"]
    assert wizard.changes == {}
    texts = {f.spec.path: f.text for f in wizard.fields()}
    assert wizard.edit({**texts, "backend_config.extra_args": "-c 512"}) == {}
    assert wizard.changes == {"backend_config.extra_args": ["-c", "512"]}
    assert wizard.form_texts() == {**texts, "backend_config.extra_args": "-c 512"}  # a redrawn form keeps it
    wizard.edit(texts)  # the form as a whole: typing the old text back leaves nothing staged
    assert wizard.changes == {}
    assert wizard.back() == wz.REVIEW and wizard.step == wz.REVIEW


def test_saving_without_changes_confirms_the_suggestions(wizard, registry, hub):
    wizard.analyse("hf", GGUF)
    wizard.start_download()
    poll_until_moved(wizard)
    suggested = registry.entry(wizard.name)
    assert suggested["metadata"]["_config_needed"] is True
    wizard.configure_step()
    wizard.save(reload_proxy=False)
    saved = registry.entry(wizard.name)
    assert "_config_needed" not in saved["metadata"] and saved["backend"] == suggested["backend"]
    assert saved["backend_config"] == suggested["backend_config"] and wizard.report is None


def test_a_gated_download_fails_with_the_login_advice_and_can_be_retried(wizard, hub):
    hub.add_repo("corp/gated", {"model-Q4_K_M.gguf": b"GGUF" + b"\0" * 100}, gated="auto")
    analysis = wizard.analyse("hf", "corp/gated")
    assert "hf auth login" in analysis.login_hint()
    wizard.start_download()
    status = poll_until_moved(wizard)
    assert status["state"] == "failed" and "hf auth login" in wizard.error and wizard.step == wz.DOWNLOAD
    wizard.retry_download()
    assert poll_until_moved(wizard)["state"] == "failed"
    assert wizard.back() == wz.SOURCE


def test_cancel_then_retry_finishes_and_the_job_survives_a_new_session(wizard, registry, hub):
    pause = hub.hold("tiny-llama-Q8_0.gguf", after_bytes=1000)
    wizard.analyse("hf", GGUF)
    job = wizard.start_download()
    assert pause.reached.wait(20)
    other = Wizard(registry, wizard.jobs)  # the same user after a page change: a fresh wizard, same job registry
    other.analyse("hf", GGUF)
    assert other.start_download() is job and other.poll()["state"] == "running"
    wizard.cancel_download()
    pause.release.set()
    assert poll_until_moved(wizard)["state"] == "cancelled" and "cancelled" in wizard.error
    assert registry.discovered_entries() == []
    wizard.retry_download()
    assert poll_until_moved(wizard)["state"] == "done" and wizard.step == wz.REVIEW
    assert len(wizard.result.names) == 1


def test_an_unsafe_repo_cannot_be_downloaded(wizard, hub):
    hub.add_repo("evil/repo", {"config.json": b"{}", "../../evil.txt": b"x", "m.safetensors": b"y"})
    wizard.analyse("hf", "evil/repo")
    assert "outside the model folder" in wizard.error
    with pytest.raises(BadInput, match="outside the model folder"):
        wizard.start_download()


def test_ollama_source_pulls_and_reviews(wizard, registry, tmp_path, tiny_model, monkeypatch):
    store = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    with FakeOllama(store) as daemon:
        daemon.add_model("tiny:q8", tiny_model.read_bytes(), template="{{ .Prompt }}")
        registry.settings.ollama_host = daemon.host
        assert wizard.analyse("ollama", "tiny:q8") is None
        assert wizard.plan() == {"source": "ollama", "name": "tiny:q8", "host": daemon.host}
        wizard.start_download()
        assert poll_until_moved(wizard)["state"] == "done"
    review = wizard.review()
    assert review["merged"]["backend"] == "ollama"
    assert review["merged"]["backend_config"]["model_path"] == "ollama:/tiny:q8"
