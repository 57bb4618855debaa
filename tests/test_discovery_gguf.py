"""The GGUF header reader (against the gguf library's own reader), split sets, projectors and GGUF facts."""
from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from modelreg.discovery import gguf_reader
from modelreg.discovery.facts import ScanError
from modelreg.discovery.gguf_models import group_gguf_files, read_gguf_set
from modelreg.discovery.gguf_reader import ARRAY_KEEP_LIMIT, GGUFError, read_gguf_header
from support import model_folders as mf
from support.tiny_gguf import write_tiny_gguf


def stats(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.gguf")}


def test_header_matches_the_gguf_library_but_skips_the_vocabulary(tmp_path):
    path = mf.write_gguf(tmp_path / "m.gguf", "qwen2", context=32768, layers=28, heads=28, kv_heads=4, hidden=3584,
                         vocab=3000, template=mf.QWEN3_TEMPLATE, name="Qwen2.5 7B Instruct")
    ours = read_gguf_header(path)
    library = gguf.GGUFReader(path)
    for key, field in library.fields.items():
        if key.startswith("GGUF."):
            continue
        count = len(field.data)
        if field.types[0] == gguf.GGUFValueType.ARRAY and count > ARRAY_KEEP_LIMIT:
            assert key not in ours.metadata and ours.array_lengths[key] == count
        else:
            assert ours.metadata[key] == pytest.approx(field.contents()), key
    assert [(t.name, t.shape, t.ggml_type) for t in ours.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type)) for t in library.tensors]
    assert ours.array_lengths["tokenizer.ggml.tokens"] == 3000
    assert ours.arch_value("attention.head_count_kv") == 4


def test_a_vocabulary_seen_before_is_stepped_over_whole(tmp_path, monkeypatch):
    shape = dict(context=4096, layers=2, heads=4, kv_heads=4, hidden=64, vocab=3000)
    first = mf.write_gguf(tmp_path / "a.gguf", "llama", **shape)
    again = mf.write_gguf(tmp_path / "b.gguf", "llama", file_type=gguf.LlamaFileType.MOSTLY_Q8_0, **shape)
    other = tmp_path / "c.gguf"  # the same count and first strings, then other ones
    writer = gguf.GGUFWriter(other, "llama")
    writer.add_token_list([f"t{i}".encode() if i < 100 else f"x{i}".encode() for i in range(3000)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    expected = {p: read_gguf_header(p) for p in (first, again, other)}  # each read string by string
    monkeypatch.setattr(gguf_reader, "STEPPED_OVER", {})
    read_gguf_header(first)
    stepped = []
    monkeypatch.setattr(gguf_reader, "repeat", lambda value, count: stepped.append(count) or [value] * count)
    for path, header in expected.items():
        assert read_gguf_header(path) == header
    assert stepped == [3000]  # only the file whose tokens differ was read string by string (its merges are absent)


def test_the_lead_s_tiny_llama_reads_the_same(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    header = read_gguf_header(path)
    library = gguf.GGUFReader(path)
    assert header.architecture == "llama"
    assert header.metadata["tokenizer.chat_template"] == library.fields["tokenizer.chat_template"].contents()
    assert len(header.tensors) == len(library.tensors)


def test_bad_magic_and_truncation_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 64)
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_header(bad)
    good = mf.llama32_1b_gguf(tmp_path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:5000])  # inside the vocabulary
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_header(cut)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_header(empty)


def test_split_sets_count_once_and_projectors_attach(tmp_path):
    sets, problems = group_gguf_files([
        "m-00002-of-00003.gguf", "m-00001-of-00003.gguf", "m-00003-of-00003.gguf", "other-Q4_K_M.gguf",
        "mmproj-model-f16.gguf", "x-00001-of-00002.gguf", "readme.md"])
    assert [(s.parts, s.projector) for s in sets] == [
        (["m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"], "mmproj-model-f16.gguf"),
        (["other-Q4_K_M.gguf"], "mmproj-model-f16.gguf")]
    assert problems == [("x-00001-of-00002.gguf", "split GGUF is incomplete: part(s) [2] of 2 missing; "
                                                  "download the missing parts")]


def test_split_model_facts_come_from_the_first_part_and_tensors_from_all(tmp_path):
    mf.split_gguf(tmp_path, parts=2)
    (model,), _ = group_gguf_files([p.name for p in tmp_path.iterdir()])
    found, problems = read_gguf_set(tmp_path, model, stats(tmp_path))
    arch = found.entry["metadata"]["architecture"]
    assert problems == []
    assert found.quantization == "q5_k_m" and found.raw_name == "Qwen2.5-14B-Instruct"
    assert arch["parameters"] == 2 * (4 * 512 + 64)  # both parts' tensors
    assert (arch["num_layers"], arch["num_kv_heads"], arch["head_dim"], arch["context_length"]) == (48, 8, 128, 32768)
    assert found.entry["metadata"]["scan"]["parts"] == [p.name for p in sorted(tmp_path.glob("*.gguf"))]
    assert found.entry["capabilities"]["tools"] is True


def test_projector_makes_the_model_vision_capable(tmp_path):
    model_path, projector = mf.qwen25_vl_gguf_with_projector(tmp_path)
    (model,), _ = group_gguf_files([p.name for p in tmp_path.iterdir()])
    found, _ = read_gguf_set(tmp_path, model, stats(tmp_path))
    assert found.entry["capabilities"]["vision"] is True
    assert found.entry["metadata"]["scan"]["projector"] == str(projector)
    assert found.entry["size_bytes"] == model_path.stat().st_size + projector.stat().st_size


def test_a_corrupt_projector_is_reported_and_the_model_kept(tmp_path):
    mf.qwen25_vl_gguf_with_projector(tmp_path)
    (tmp_path / "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf").write_bytes(b"junk")
    (model,), _ = group_gguf_files([p.name for p in tmp_path.iterdir()])
    found, problems = read_gguf_set(tmp_path, model, stats(tmp_path))
    assert found.entry["capabilities"]["vision"] is False
    assert len(problems) == 1 and "not a GGUF file" in problems[0].message


def test_a_projector_alone_is_not_a_model(tmp_path):
    _, projector = mf.qwen25_vl_gguf_with_projector(tmp_path)
    renamed = projector.rename(tmp_path / "vision-encoder.gguf")
    (model,), _ = group_gguf_files([renamed.name])
    with pytest.raises(ScanError, match="projector"):
        read_gguf_set(tmp_path, model, stats(tmp_path))
