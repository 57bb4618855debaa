"""Merge laws: curated over discovered, profile over curated, provenance per leaf, determinism."""
from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.fields import FieldClass, field_class
from modelreg.merge import entry_layers, merge_entry, merge_layers
from modelreg.paths import flatten
from modelreg.store import dumps_snapshot

scalars = st.one_of(st.integers(-5, 70000), st.text(max_size=6), st.booleans())
values = st.one_of(scalars, st.lists(st.text(max_size=5), max_size=3))
CONFIG_PATHS = ["backend", "backend_config.port", "backend_config.extra_args", "backend_config.host",
                "generation_defaults.temperature", "roles", "model_aliases", "deprecated"]
DEFAULT_PATHS = ["display_name", "quantization", "backend_config.model_path", "capabilities.vision", "family"]
FACT_PATHS = ["download_path", "size_bytes", "metadata.architecture.num_layers", "metadata.format"]


def nest(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def layer_entry(paths):
    return st.dictionaries(st.sampled_from(paths), values, max_size=len(paths)).map(nest)


discovered_entries = layer_entry(DEFAULT_PATHS + FACT_PATHS)
curated_entries = layer_entry(CONFIG_PATHS + DEFAULT_PATHS)


def merge_two(discovered: dict | None, curated: dict | None):
    return merge_entry("m", entry_layers(discovered, curated, None, None))


def test_merge_iterates_the_declared_layer_order():
    layers = entry_layers({"name": "m", "display_name": "disk"}, {"name": "m", "display_name": "base"},
                          {"name": "m", "profile": "p", "display_name": "gpu"}, "p")
    assert [label for label, _ in layers] == ["discovered", "curated", "profile:p"]
    assert merge_entry("m", layers).entry == {"name": "m", "display_name": "gpu"}
    assert merge_entry("m", reversed(layers)).entry["display_name"] == "disk"


def test_curated_over_discovered():
    merged = merge_two({"name": "m", "backend_config": {"model_path": "/m", "extra_args": []}},
                         {"name": "m", "backend_config": {"extra_args": ["--max-model-len", "4096"]}})
    assert merged.entry["backend_config"] == {"model_path": "/m", "extra_args": ["--max-model-len", "4096"]}
    assert merged.sources["backend_config.extra_args"] == "curated"
    assert merged.sources["backend_config.model_path"] == "discovered"
    assert merged.overridden == {"backend_config.extra_args": []}


def test_profile_over_curated_over_discovered():
    merged = merge_entry("m", entry_layers({"name": "m", "display_name": "D"},
                                           {"name": "m", "backend": "vllm", "backend_config": {"port": 1}},
                                           {"name": "m", "profile": "4080", "backend_config": {"port": 2}}, "4080"))
    assert merged.entry["backend_config"]["port"] == 2
    assert merged.entry["backend"] == "vllm"
    assert "profile" not in merged.entry
    assert merged.sources == {"name": "curated", "display_name": "discovered", "backend": "curated",
                              "backend_config.port": "profile:4080"}


def test_lists_replace_never_append():
    merged = merge_two({"name": "m", "capabilities": {"x": [1, 2]}}, {"name": "m", "capabilities": {"x": [3]}})
    assert merged.entry["capabilities"]["x"] == [3]


def test_null_in_higher_layer_is_no_opinion():
    merged = merge_two({"name": "m", "display_name": "Disk"}, {"name": "m", "display_name": None})
    assert merged.entry["display_name"] == "Disk"
    assert merged.sources["display_name"] == "discovered"


def test_curated_fact_is_ignored_with_warning():
    merged = merge_two({"name": "m", "size_bytes": 10}, {"name": "m", "size_bytes": 99})
    assert merged.entry["size_bytes"] == 10
    assert any("size_bytes" in w and "ignored" in w for w in merged.warnings)


def test_legacy_config_in_discovered_is_labelled_and_warned():
    merged = merge_two({"name": "m", "backend": "vllm", "backend_config": {"extra_args": []}}, None)
    assert merged.sources["backend"] == "legacy"
    assert merged.sources["backend_config.extra_args"] == "legacy"
    assert any("migrate" in w for w in merged.warnings)


def test_object_replacing_scalar_drops_stale_provenance():
    merged = merge_two({"name": "m", "chat_template": {"source": "embedded", "sha256": "ab"}},
                         {"name": "m", "chat_template": "/t.jinja"})
    assert merged.entry["chat_template"] == "/t.jinja"
    assert "chat_template.source" not in merged.sources
    assert merged.sources["chat_template"] == "curated"


@settings(max_examples=150, deadline=None)
@given(discovered_entries, curated_entries)
def test_curated_wins_on_every_non_fact_field(discovered, curated):
    merged = merge_two({"name": "m", **discovered}, {"name": "m", **curated})
    flat_m = flatten(merged.entry)
    for path, value in flatten(curated).items():
        if value is None or value == {}:
            continue
        assert field_class(path) is not FieldClass.FACT
        assert flat_m[path] == value
        assert merged.sources[path] == "curated"
    for path, value in flatten(discovered).items():
        if field_class(path) is FieldClass.FACT and value is not None and value != {}:
            assert flat_m[path] == value


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), discovered_entries), max_size=5),
       st.lists(st.tuples(st.sampled_from("abcdef"), curated_entries), max_size=5))
def test_merge_is_deterministic_and_order_independent(found, chosen):
    discovered = [{"name": n, **e} for n, e in dict(found).items()]
    curated = [{"name": n, **e} for n, e in dict(chosen).items()]
    first = merge_layers(copy.deepcopy(discovered), copy.deepcopy(curated))
    second = merge_layers(list(reversed(discovered)), list(reversed(curated)))
    assert dumps_snapshot(first.entries) == dumps_snapshot(second.entries)
    assert [e["name"] for e in first.entries] == sorted({e["name"] for e in discovered + curated})
    assert first.sources == second.sources


@settings(max_examples=100, deadline=None)
@given(discovered_entries, curated_entries)
def test_every_leaf_has_provenance(discovered, curated):
    merged = merge_two({"name": "m", **discovered}, {"name": "m", **curated})
    assert set(flatten(merged.entry)) == set(merged.sources)
