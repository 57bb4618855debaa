"""One place for the context: the context field and the backend's context flag may not disagree silently."""
from __future__ import annotations

import pytest

from modelreg.launch.advice.fit import CONTEXT_FIELD, context_places
from modelreg.launch.planning.plan import context_conflict
from modelreg.settings import Settings


@pytest.mark.parametrize("backend, args", [
    ("llama.cpp", ["--ctx-size", "512"]),
    ("llama.cpp", ["-c", "512"]),
    ("vllm", ["--max-model-len", "512"]),
    ("llama-cpp-python", ["--n_ctx", "512"]),
])
def test_each_backends_context_flag_is_a_place(backend, args):
    entry = {"name": "m", "backend": backend, "backend_config": {"extra_args": args}}
    assert list(context_places(entry).values()) == [512]
    assert context_conflict("m", entry) is None  # one place only
    entry["generation_defaults"] = {"context_window": 512}
    assert context_conflict("m", entry) is None  # they agree
    entry["generation_defaults"] = {"context_window": 1024}
    message = context_conflict("m", entry)
    assert message and f"{CONTEXT_FIELD} is 1024" in message and " is 512" in message


def test_the_field_alone_is_the_one_place():
    entry = {"name": "m", "backend": "vllm", "generation_defaults": {"context_window": 4096}}
    assert context_places(entry) == {CONTEXT_FIELD: 4096}
    assert context_conflict("m", entry) is None


def test_fit_reports_the_context_from_either_place():
    from modelreg.launch.advice.fit import estimate
    entry = {"name": "m", "backend": "llama.cpp", "generation_defaults": {"context_window": 1024},
             "metadata": {"architecture": {"context_length": 2048}}}
    assert estimate(entry, "16GiB", 0.9)["configured_context"] == 1024
    entry = {"name": "m", "backend": "llama.cpp", "backend_config": {"extra_args": ["-c", "512"]},
             "metadata": {"architecture": {"context_length": 2048}}}
    assert estimate(entry, "16GiB", 0.9)["configured_context"] == 512


def test_fits_apply_writes_where_the_context_lives():
    from modelreg.views.fit import context_change
    field_only = {"name": "m", "backend": "llama.cpp", "generation_defaults": {"context_window": 1024}}
    assert context_change(field_only, 2048) == {CONTEXT_FIELD: 2048}
    flag = {"name": "m", "backend": "llama.cpp", "backend_config": {"extra_args": ["-c", "512"]}}
    assert context_change(flag, 2048) == {"backend_config.extra_args": ["-c", "2048"]}


def test_ollamas_num_ctx_is_a_place_too():
    entry = {"name": "m", "backend": "ollama", "generation_defaults": {"num_ctx": 2048}}
    assert context_places(entry) == {"generation_defaults.num_ctx": 2048}
    entry["backend_config"] = {"extra_args": ["--num_ctx", "4096"]}
    message = context_conflict("m", entry)
    assert message and "generation_defaults.num_ctx is 2048" in message and "--num-ctx is 4096" in message


def editor_target(discovered_args=None, curated=None):
    from modelreg.views.editor import EditTarget
    discovered = {"name": "m", "backend": "llama.cpp", "metadata": {"architecture": {"context_length": 4096}},
                  "backend_config": {"port": 24001, "model_path": "/models/m.gguf",
                                     **({"extra_args": discovered_args} if discovered_args else {})}}
    return EditTarget("m", None, discovered, {"name": "m", **(curated or {})}, None, "rev")


def context_state(target):
    from modelreg.views.editor import field_states
    return next(s for s in field_states(target) if s.spec.path == CONTEXT_FIELD)


def test_the_editor_shows_the_one_effective_context_and_edits_it_where_it_lives():
    from modelreg.views.editor import form_patch
    flagged = editor_target(curated={"backend_config": {"extra_args": ["-ngl", "99", "-c", "512"]}})
    state = context_state(flagged)
    assert state.value == 512 and state.provenance == "from curated: backend_config.extra_args --ctx-size"
    changes, errors = form_patch(flagged, {CONTEXT_FIELD: "1024"}, settings=Settings())
    assert changes == {"backend_config.extra_args": ["-ngl", "99", "-c", "1024"]} and not errors  # in place
    changes, _ = form_patch(flagged, {CONTEXT_FIELD: ""})
    assert changes == {"backend_config.extra_args": ["-ngl", "99"]}  # cleared where it lives
    field_only = editor_target(curated={"generation_defaults": {"context_window": 2048}})
    assert context_state(field_only).value == 2048
    assert form_patch(field_only, {CONTEXT_FIELD: "1024"})[0] == {CONTEXT_FIELD: 1024}
    nowhere = editor_target()
    assert context_state(nowhere).value is None  # the native context is a fact, not a setting
    assert form_patch(nowhere, {CONTEXT_FIELD: "1024"})[0] == {CONTEXT_FIELD: 1024}
    agreeing = editor_target(["-c", "512"], {"generation_defaults": {"context_window": 512}})
    changes, errors = form_patch(agreeing, {CONTEXT_FIELD: "768"}, settings=Settings())
    assert changes == {CONTEXT_FIELD: 768, "backend_config.extra_args": ["-c", "768"]} and not errors


def test_the_editor_names_both_places_when_they_differ_and_an_edit_there_makes_them_agree():
    from modelreg.views.editor import check_edit, form_patch
    differing = editor_target(["-c", "512"], {"generation_defaults": {"context_window": 1024}})
    state = context_state(differing)
    assert state.value == 512  # what the backend would take
    check = check_edit(differing, {}, Settings())
    both = f"{CONTEXT_FIELD} is 1024 and backend_config.extra_args --ctx-size is 512"
    assert both in check.errors[CONTEXT_FIELD] and check.plan is None and both in (check.plan_error or "")
    changes, errors = form_patch(differing, {CONTEXT_FIELD: "768"}, settings=Settings())
    assert changes == {CONTEXT_FIELD: 768, "backend_config.extra_args": ["-c", "768"]} and not errors
    changes, errors = form_patch(differing, {"backend_config.extra_args": "-c 2048"}, settings=Settings())
    assert "is 1024 and backend_config.extra_args --ctx-size is 2048" in errors[CONTEXT_FIELD]


def test_every_reporter_gives_the_one_effective_value():
    """fit, the launch plan, /v1/models' served and per-request context, the llama-swap export and the models table
    all read effective_context: the flag where it lives there, the field where it lives there."""
    from modelreg.hosts.llama_swap import model_config
    from modelreg.launch.advice.fit import effective_context, estimate
    from modelreg.launch.planning.plan import launch_plan, per_request_context, served_context
    from modelreg.views.models import context_column
    base = {"name": "m", "backend": "llama.cpp", "metadata": {"architecture": {"context_length": 4096}},
            "backend_config": {"port": 24001, "model_path": "/models/m.gguf"}}
    for where, entry in (
            ("field", {**base, "generation_defaults": {"context_window": 1024}}),
            ("flag", {**base, "backend_config": {**base["backend_config"], "extra_args": ["--ctx-size", "1024"]}}),
            ("both", {**base, "generation_defaults": {"context_window": 1024},
                      "backend_config": {**base["backend_config"], "extra_args": ["-c", "1024"]}})):
        plan = launch_plan(entry, Settings())
        assert effective_context(entry) == 1024, where
        assert estimate(entry, "16GiB", 0.9)["configured_context"] == 1024, where
        assert served_context(entry) == per_request_context(entry) == 1024, where
        assert model_config(plan, entry, [], Settings())["capabilities"]["context"] == 1024, where
        assert context_column(entry, {})[0] == 1024, where
        assert plan.argv.count("1024") == 1 and "4096" not in plan.argv, where
    assert served_context(base) == 4096 and effective_context(base) is None  # no place: the native context is served


def test_validate_counts_a_conflict_between_any_two_curated_places_as_an_error():
    from modelreg.launch.planning.checks import curated_launch_problems
    entry = {"name": "q", "backend": "ollama", "generation_defaults": {"num_ctx": 2048},
             "backend_config": {"extra_args": ["--num-ctx", "4096"]}}
    curated = {"generation_defaults.num_ctx": "curated", "backend_config.extra_args": "curated"}
    errors, _ = curated_launch_problems([entry], {"q": curated}, Settings())
    assert any("generation_defaults.num_ctx is 2048 and backend_config.extra_args --num-ctx is 4096" in e
               for e in errors), errors
    errors, warnings = curated_launch_problems([entry], {"q": {}}, Settings())  # from a legacy layer: a warning
    assert not errors and any("places set the context" in w for w in warnings)


def test_a_zero_context_flag_is_a_place_too():
    """llama-server's `-c 0` takes the model's own context: beside a context field it is a conflict, and alone the
    native context is what is served."""
    from modelreg.launch.planning.plan import served_context
    entry = {"name": "m", "backend": "llama.cpp", "backend_config": {"extra_args": ["-c", "0"]},
             "metadata": {"architecture": {"context_length": 2048}}}
    assert context_places(entry) == {"backend_config.extra_args --ctx-size": 0} and served_context(entry) == 2048
    entry["generation_defaults"] = {"context_window": 1024}
    assert "context_window is 1024 and backend_config.extra_args --ctx-size is 0" in context_conflict("m", entry)
