"""`modelreg import llama-swap` as a library: each feature of llama-swap's config format read as llama-swap reads it,
what goes into each layer, what is listed as not carried over, and nothing written on an error or a repeat."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from modelreg.errors import BadInput
from modelreg.hosts.llama_swap_import import command_argv, import_llama_swap, plan_import
from modelreg.registry import Registry
from support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def registry(tmp_path) -> Registry:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({"executables": {"llama.cpp": "llama-server"}}))
    return Registry(folder)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def models(registry: Registry, path: Path, environ: dict | None = None) -> dict:
    return {m.name: m for m in plan_import(registry, path, environ or {}).models}


def layer_bytes(registry: Registry) -> list[bytes | None]:
    return [p.read_bytes() if p.exists() else None
            for p in (registry.discovered_path, registry.curated_path, registry.snapshot_path)]


# ---- macros -------------------------------------------------------------------------------------------------------
def test_macros_multi_line_nested_per_model_model_id_and_env(registry, tmp_path):
    path = config(tmp_path, """\
        startPort: ${env.START}
        macros:
          "bin": "${env.BIN_DIR}/llama-server"
          "server": >
            ${bin}
            --port ${PORT}
          "ctx": 1024
          "args": "--ctx-size ${ctx} --threads 2"
        models:
          "b-model":
            macros:
              "ctx": 4096
            cmd: ${server} -m /m/${MODEL_ID}.gguf ${args}
          "a-model":
            cmd: ${server} -m /m/${MODEL_ID}.gguf ${args}
        """)
    found = models(registry, path, {"BIN_DIR": "/opt/llama", "START": "7000"})
    assert found["a-model"].argv == ["/opt/llama/llama-server", "--port", "7000", "-m", "/m/a-model.gguf",
                                     "--ctx-size", "1024", "--threads", "2"]
    assert found["b-model"].argv[2] == "7001"  # ports in model-ID order from startPort
    assert found["b-model"].argv[-3:] == ["4096", "--threads", "2"]  # the model's macro overrides the global one
    assert found["a-model"].curated["backend_config.port"] == 7000
    assert found["a-model"].curated["backend_config.extra_args"] == ["--ctx-size", "1024", "--threads", "2"]


@pytest.mark.parametrize(("macros", "line", "words"), [
    ('  "a": "${b} x"\n  "b": "y"\n', 6, "unknown macro ${b}"),  # used before it is declared: llama-swap refuses
    ('  "PORT": 5\n', 2, "reserved macro name"),
    ('  "a": "x ${a}"\n', 2, "refers to itself"),
    ('  "bad name": 1\n', 2, "letters, digits"),
    ('  "a": [1, 2]\n', 2, "string, number or bool"),
])
def test_macro_mistakes_name_file_line_and_key(registry, tmp_path, macros, line, words):
    cmd = "models:\n  m:\n    cmd: llama-server ${a} -m /m.gguf --port ${PORT}\n"
    path = config(tmp_path, "macros:\n" + macros + cmd)
    with pytest.raises(BadInput) as caught:
        plan_import(registry, path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: ") and words in message and message.endswith("nothing was imported")


def test_an_unset_env_macro_is_an_error_with_its_line(registry, tmp_path):
    path = config(tmp_path, """\
        models:
          m:
            cmd: llama-server --port ${PORT} -m ${env.NOPE_DIR}/m.gguf
        """)
    with pytest.raises(BadInput, match=r"config.yaml:3: models.m.cmd: \$\{env.NOPE_DIR\} names a variable that is not "
                                       r"set; export NOPE_DIR"):
        plan_import(registry, path, {})


def test_port_in_proxy_without_port_in_cmd_is_refused(registry, tmp_path):
    path = config(tmp_path, """\
        models:
          m:
            cmd: llama-server --port 9000 -m /m.gguf
            proxy: http://127.0.0.1:${PORT}
        """)
    with pytest.raises(BadInput, match=r":4: models.m.proxy: proxy uses \$\{PORT\} \(its default\) but cmd does not"):
        plan_import(registry, path, {})


# ---- cmd ----------------------------------------------------------------------------------------------------------
def test_cmd_comment_lines_blocks_backslashes_and_quotes():
    cmd = "# a comment ${NOT_A_MACRO}\nllama-server \\\n  --port 9\n  # another\n  -m '/my models/m.gguf'\n"
    assert command_argv(cmd) == ["llama-server", "--port", "9", "-m", "/my models/m.gguf"]


def test_backends_are_recognised_from_the_program_and_others_are_skipped(registry, tmp_path):
    path = config(tmp_path, """\
        models:
          vl:
            cmd: /opt/venv/bin/vllm serve /models/qwen --port ${PORT} --served-model-name qwen --max-model-len 4096
          py:
            cmd: python3 -m llama_cpp.server --model /models/m.gguf --port ${PORT} --n_ctx 512
          sd:
            cmd: /opt/sd/sd-server --port ${PORT}
        """)
    found = models(registry, path)
    assert found["vl"].backend == "vllm" and found["vl"].curated["served_model_id"] == "qwen"
    assert found["vl"].curated["backend_config.extra_args"] == ["--max-model-len", "4096"]
    assert found["vl"].discovered["backend_config"]["model_path"] == "/models/qwen"
    assert found["py"].backend == "llama-cpp-python"
    assert found["py"].curated["backend_config.extra_args"] == ["--n_ctx", "512"]
    assert found["sd"].skipped.startswith("/opt/sd/sd-server is not a backend modelreg knows")


def test_launcher_owned_flags_leave_extra_args_and_secrets_are_not_carried(registry, tmp_path):
    path = config(tmp_path, """\
        models:
          m:
            cmd: llama-server --host 0.0.0.0 --port 9100 --model /m.gguf --alias served -ngl 99 --api-key sk-1
            proxy: http://127.0.0.1:9100
          hub:
            cmd: llama-server -hf org/model --port ${PORT}
        """)
    found = models(registry, path)
    m = found["m"]
    assert m.curated["backend_config.extra_args"] == ["-ngl", "99"]
    assert m.curated["backend_config.host"] == "0.0.0.0" and m.curated["backend_config.port"] == 9100
    assert m.curated["served_model_id"] == "served"
    assert any(lost.startswith("cmd --api-key: it puts a secret") for lost in m.not_carried)
    assert "sk-1" not in json.dumps(m.curated)
    assert "fetch or choose its model itself" in found["hub"].skipped


# ---- per-model keys -----------------------------------------------------------------------------------------------
def test_model_keys_become_curated_fields_and_the_rest_is_listed(registry, tmp_path):
    path = config(tmp_path, """\
        healthCheckTimeout: 5
        globalTTL: 120
        models:
          m:
            cmd: llama-server --port ${PORT} -m /m.gguf
            name: "My model"
            description: "words"
            aliases: ["a1", {id: "a2", name: "Alias two", unlisted: true}]
            useModelName: "upstream-name"
            unlisted: true
            concurrencyLimit: 3
            checkEndpoint: /ready
            cmdStop: kill ${PID}
            filters: {stripParams: "top_k", setParams: {temperature: 0.2, stop: ["END"], custom: 1}}
            capabilities: {tools: true, in: [text, image], context: 8192}
          n:
            cmd: llama-server --port ${PORT} -m /n.gguf
            ttl: 0
        """)
    found = models(registry, path)
    m = found["m"].curated
    assert m["display_name"] == "My model" and m["model_aliases"] == ["a1", "a2"]
    assert m["served_model_id"] == "upstream-name" and m["deprecated"] is True
    assert m["backend_config.max_concurrency"] == 3
    assert m["backend_config.idle_ttl"] == 120  # no ttl: globalTTL
    assert found["n"].curated["backend_config.idle_ttl"] == 0  # 0: never unload, whatever the setting
    assert m["backend_config.ready_timeout"] == 15  # llama-swap raises a smaller healthCheckTimeout to 15
    assert m["generation_defaults.temperature"] == 0.2 and m["generation_defaults.stop_sequences"] == ["END"]
    assert m["capabilities.tools"] is True and m["capabilities.vision"] is True
    lost = " | ".join(found["m"].not_carried)
    for key in ("description", "cmdStop", "checkEndpoint /ready", "filters.stripParams", "filters.setParams.custom",
                "aliases[1].name", "aliases[1].unlisted", "capabilities.context"):
        assert key in lost, key


def test_send_loading_state_per_model_or_global_becomes_loading_state(registry, tmp_path):
    """true: progress a chat UI shows; false (llama-swap sends nothing): comments; absent: the setting decides."""
    path = config(tmp_path, """\
        sendLoadingState: true
        models:
          shown: {cmd: "llama-server --port ${PORT} -m /a.gguf"}
          quiet: {cmd: "llama-server --port ${PORT} -m /b.gguf", sendLoadingState: false}
        """)
    found = models(registry, path)
    assert found["shown"].curated["backend_config.loading_state"] == "reasoning"
    assert found["quiet"].curated["backend_config.loading_state"] == "comments"
    assert not any("sendLoadingState" in lost for m in found.values() for lost in m.not_carried)
    path.write_text(path.read_text().replace("sendLoadingState: true\n", ""))
    assert "backend_config.loading_state" not in models(registry, path)["shown"].curated


def test_env_macros_in_env_stay_references_and_literal_dollars_are_kept(registry, tmp_path):
    path = config(tmp_path, """\
        models:
          m:
            cmd: llama-server --port ${PORT} -m /m.gguf
            env: ["CUDA_VISIBLE_DEVICES=0,1", "HF_TOKEN=${env.MY_TOKEN}", "PRICE=$5"]
        """)
    found = models(registry, path, {"MY_TOKEN": "hf_secret"})
    assert found["m"].curated["backend_config.env"] == {
        "CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "${MY_TOKEN}", "PRICE": "$$5"}


@pytest.mark.parametrize("place", ["cmd: llama-server --port ${PORT} -m /m.gguf --alias ${env.HF_TOKEN}",
                                   "cmd: llama-server --port ${PORT} -m /m.gguf -c ${env.HF_TOKEN}",
                                   "cmd: llama-server --port ${PORT} -m /m-${env.HF_TOKEN}.gguf"])
def test_a_secret_env_macro_is_never_written_as_its_value(registry, tmp_path, place):
    """An untrusted config can name any variable of the importing user: one that holds a secret would land in the
    registry files (and /v1/models, the exports). A model's `env` keeps it a reference; a key flag is left behind."""
    path = config(tmp_path, f"""\
        models:
          m:
            {place}
          keyed:
            cmd: llama-server --port ${{PORT}} -m /k.gguf --api-key ${{env.HF_TOKEN}}
            env: ["HF_TOKEN=${{env.HF_TOKEN}}"]
        """)
    before = layer_bytes(registry)
    with pytest.raises(BadInput, match=r"config.yaml:2: models.m: \$\{env.HF_TOKEN\} looks like a secret"):
        import_llama_swap(registry, path, environ={"HF_TOKEN": "hf_abcdefgh12345678"})
    assert layer_bytes(registry) == before
    path.write_text(path.read_text().replace(place, "cmd: llama-server --port ${PORT} -m /m.gguf"))
    found = models(registry, path, {"HF_TOKEN": "hf_abcdefgh12345678"})
    assert "hf_abcdefgh" not in json.dumps([found["keyed"].curated, found["keyed"].discovered], default=str)
    assert found["keyed"].curated["backend_config.env"] == {"HF_TOKEN": "${HF_TOKEN}"}


# ---- groups and sets ----------------------------------------------------------------------------------------------
MODELS = "".join(f"  {name}:\n    cmd: llama-server --port ${{PORT}} -m /{name}.gguf\n" for name in "abcdv")


def test_groups_give_exclusive_groups_and_the_rest_share_the_default_group(registry, tmp_path):
    path = config(tmp_path, "models:\n" + MODELS + textwrap.dedent("""\
        routing:
          router:
            use: group
            settings:
              groups:
                one: {members: [a, b]}
                together: {swap: false, exclusive: false, members: [c]}
        """))
    found = models(registry, path)
    assert found["a"].curated["backend_config.exclusive_group"] == "one"
    assert "backend_config.exclusive_group" not in found["c"].curated
    assert found["d"].curated["backend_config.exclusive_group"] == "(default)"
    assert any("exclusive" in lost for lost in found["a"].not_carried)


def test_legacy_top_level_groups_are_read_and_both_forms_at_once_are_refused(registry, tmp_path):
    path = config(tmp_path, "models:\n" + MODELS + "groups:\n  g: {members: [a, v]}\n")
    assert models(registry, path)["v"].curated["backend_config.exclusive_group"] == "g"
    path.write_text(path.read_text() + "routing:\n  router:\n    use: group\n")
    with pytest.raises(BadInput, match="both the legacy top-level groups/matrix and routing.router"):
        plan_import(registry, path, {})


def test_matrix_sets_become_the_groups_of_models_that_may_not_run_together(registry, tmp_path):
    path = config(tmp_path, "models:\n" + MODELS + textwrap.dedent("""\
        matrix:
          vars: {q: b}
          sets:
            llms: "a | q | c"
            with_voice: "(+llms) & v"
            big: "d"
        """))
    found = models(registry, path)
    groups = {name: item.curated.get("backend_config.exclusive_group") for name, item in found.items()}
    # a, b, c, d may not run with each other: one group; v may run with a, b or c but not with d, so it joins them
    assert len({groups[n] for n in "abcdv"}) == 1 and groups["a"] is not None
    assert any("may run with v" in lost for lost in found["a"].not_carried)
    path.write_text(path.read_text().replace('big: "d"', 'big: "d & v"'))  # now v may run with every model
    found = models(registry, path)
    assert "backend_config.exclusive_group" not in found["v"].curated
    assert found["d"].curated["backend_config.exclusive_group"] == found["a"].curated["backend_config.exclusive_group"]
    bad = config(tmp_path, "models:\n" + MODELS + 'matrix:\n  sets:\n    s: "(a | b"\n')
    with pytest.raises(BadInput, match=r"matrix.sets.s: a \( is not closed"):
        plan_import(registry, bad, {})


def test_matrix_models_that_may_always_run_together_get_no_group(registry, tmp_path):
    path = config(tmp_path, "models:\n" + MODELS + 'matrix:\n  sets:\n    all: "a & b & c & d & v"\n')
    assert all("backend_config.exclusive_group" not in m.curated for m in models(registry, path).values())


# ---- writing ------------------------------------------------------------------------------------------------------
def test_import_writes_facts_and_configuration_and_a_second_import_changes_nothing(registry, tmp_path):
    write_tiny_gguf(tmp_path / "tiny.gguf")
    path = config(tmp_path, f"""\
        models:
          tiny:
            cmd: llama-server --port ${{PORT}} -m {tmp_path}/tiny.gguf -c 512
            env: ["HF_TOKEN=${{env.MY_TOKEN}}"]
          gone:
            cmd: llama-server --port ${{PORT}} -m {tmp_path}/gone.gguf
        """)
    environ = {"MY_TOKEN": "hf_neverwritten"}
    first = import_llama_swap(registry, path, environ=environ)
    assert first.changed
    entry = registry.entry("tiny")
    assert entry["backend"] == "llama.cpp" and entry["backend_config"]["extra_args"] == ["-c", "512"]
    assert entry["metadata"]["format"] == "gguf" and entry["metadata"]["architecture"]  # facts from the file
    assert registry.entry("gone").get("missing") is True
    written = layer_bytes(registry)
    assert all(b"hf_neverwritten" not in raw for raw in written if raw)
    history = len(registry.history_items())
    second = import_llama_swap(registry, path, environ=environ)
    assert not second.changed and layer_bytes(registry) == written and len(registry.history_items()) == history


def test_dry_run_and_errors_write_nothing(registry, tmp_path):
    path = config(tmp_path, "models:\n  m:\n    cmd: llama-server --port ${PORT} -m /m.gguf\n")
    before = layer_bytes(registry)
    result = import_llama_swap(registry, path, dry_run=True, environ={})
    assert result.dry_run and not result.changed and result.imported() and layer_bytes(registry) == before
    path.write_text("models:\n  m:\n    cmd: llama-server --port ${PORT} -m /m.gguf\n  n: [unclosed\n")
    with pytest.raises(BadInput, match=r"config.yaml:5: not valid YAML"):
        import_llama_swap(registry, path, environ={})
    path.write_text("models:\n  m:\n    name: no command\n")
    with pytest.raises(BadInput, match=r"config.yaml:2: models.m.cmd: every model needs `cmd`"):
        import_llama_swap(registry, path, environ={})
    assert layer_bytes(registry) == before


def test_a_name_the_registry_gives_another_file_is_left_out(registry, tmp_path):
    registry.discovered_writer().upsert([{"name": "m", "backend_config": {"model_path": "/elsewhere/m.gguf"}}])
    path = config(tmp_path, "models:\n  m:\n    cmd: llama-server --port ${PORT} -m /m.gguf\n")
    item = plan_import(registry, path, {}).models[0]
    assert "already has a model 'm' for another file (/elsewhere/m.gguf)" in item.skipped


def test_an_exported_config_imports_back_to_the_same_launch(tmp_path):
    """`modelreg export llama-swap` then `modelreg import llama-swap`: the program, environment and flags come back
    as they were."""
    from modelreg.hosts.llama_swap import llama_swap_config, llama_swap_yaml
    from modelreg.launch.planning.plan import launch_plan

    write_tiny_gguf(tmp_path / "tiny.gguf")
    source = tmp_path / "source"
    source.mkdir()
    (source / "settings.json").write_text(json.dumps({"executables": {"llama.cpp": "llama-server"}}))
    (source / "model_registry.curated.json").write_text(json.dumps([{
        "name": "tiny", "backend": "llama.cpp", "served_model_id": "tiny-served",
        "backend_config": {"port": 24101, "model_path": str(tmp_path / "tiny.gguf"), "extra_args": ["-c", "512"],
                           "executable": "/opt/llama/llama-server-b4000",
                           "env": {"CUDA_VISIBLE_DEVICES": "1", "HF_TOKEN": "${HF_TOKEN}", "PRICE": "$$5"}}}]))
    exported = llama_swap_yaml(llama_swap_config(Registry(source)), None, None)
    assert "HF_TOKEN=${env.HF_TOKEN}" in exported and "PRICE=$5" in exported
    target = tmp_path / "target"
    target.mkdir()
    (target / "settings.json").write_text(json.dumps({"executables": {"llama.cpp": "llama-server"}}))
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    back = Registry(target)
    import_llama_swap(back, path, environ={"HF_TOKEN": "hf_x"})
    before = launch_plan(Registry(source).entry("tiny"), Registry(source).settings)
    after = launch_plan(back.entry("tiny"), back.settings)
    assert after.env == before.env
    # the export writes ${PORT}, so the port is the one llama-swap itself gives: startPort's default
    assert after.port == 5800
    assert after.argv == [str(after.port) if arg == str(before.port) else arg for arg in before.argv]


def test_a_file_the_registry_already_lists_under_another_name_is_noted(registry, tmp_path):
    registry.discovered_writer().upsert([{"name": "scanned-name", "backend_config": {"model_path": "/m.gguf"}}])
    path = config(tmp_path, "models:\n  m:\n    cmd: llama-server --port ${PORT} -m /m.gguf\n")
    item = plan_import(registry, path, {}).models[0]
    assert item.skipped is None and any("also lists this file as scanned-name" in note for note in item.notes)


def test_env_macros_in_keys_the_import_leaves_behind_need_no_variable(registry, tmp_path):
    path = config(tmp_path, """\
        apiKeys: ["${env.NOT_EXPORTED_KEY}"]
        peers:
          remote: {proxy: http://10.0.0.2, models: [x], apiKey: "${env.NOT_EXPORTED_PEER}"}
        models:
          m:
            cmd: llama-server --port ${PORT} -m /m.gguf
        """)
    result = plan_import(registry, path, {})
    assert result.models[0].skipped is None
    assert any(line.startswith("apiKeys: ") for line in result.not_carried)
    assert any(line.startswith("peers: ") for line in result.not_carried)


def test_a_file_of_aliases_inside_aliases_is_refused_at_once(registry, tmp_path):
    """"Billion laughs": nine levels of nine aliases would expand to 387 million texts."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    path = config(tmp_path, "\n".join([*levels, "models:", "  m: {cmd: 'llama-server --port ${PORT} -m /m.gguf'}",
                                        "  n: {cmd: 'llama-server --port ${PORT} -m /n.gguf', metadata: *a8}"]) + "\n")
    before = layer_bytes(registry)
    with pytest.raises(BadInput, match="expands to more than 100000 values"):
        plan_import(registry, path, {})
    assert layer_bytes(registry) == before
