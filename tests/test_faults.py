"""Faults a registry must survive, injected for real: SIGKILL at every write point (strace on the CLI, or a forked
writer that kills itself in its n-th fsync), scans in two processes at once, read-only and full disks (tmpfs in a
mount namespace), a file-size limit, a symlinked curated file."""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelreg.cli.main import main
from modelreg.discovery.scan import scan
from modelreg.history import CuratedHistory
from modelreg.paths import flatten
from modelreg.registry import Registry, config_paths
from modelreg.store import CURATED_FILE, DISCOVERED_FILE, PENDING_STUBS_FILE, SNAPSHOT_FILE
from support import model_folders as mf
from support.faults import MODELREG, count_fsyncs, in_mount_namespace, modelreg_killed_at, run_in_child
from support.layers import discovered_model, write_layers

LAYER_FILES = (DISCOVERED_FILE, CURATED_FILE, SNAPSHOT_FILE)


def gguf_models(root: Path, count: int) -> Path:
    for i in range(count):
        mf.write_gguf(root / f"m{i:02d}" / f"model-{i:02d}-Q4_K_M.gguf", "llama", context=4096, layers=2, heads=4,
                      kv_heads=4, hidden=64, vocab=50)
    return root


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory) -> Path:
    return gguf_models(tmp_path_factory.mktemp("sixteen"), 16)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def base_names(registry: Registry) -> set[str]:
    return {e["name"] for e in registry.curated_entries() if e.get("profile") is None}


def temp_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def assert_files_parse(folder: Path) -> None:
    """Every layer file parses, and every kept curated version reads back as a JSON list."""
    for path in (folder / name for name in LAYER_FILES):
        if path.exists():
            json.loads(path.read_bytes())
    history = CuratedHistory(folder)
    for item in history.items():
        assert isinstance(json.loads(history.raw(item.id)), list), item


def assert_every_model_stubbed(registry: Registry) -> None:
    names = {e["name"] for e in registry.discovered_entries()}
    assert names <= base_names(registry), names - base_names(registry)


def test_the_audits_killed_scan_loses_no_stub(tmp_path, sixteen):
    """The audit's command, `strace -f -e inject=fsync:signal=SIGKILL:when=2 modelreg scan DIR`, killed the scan
    between its discovered write and its stubs; later scans said "0 new stub(s)" and 16 models never got one."""
    config = tmp_path / "configs"
    killed = modelreg_killed_at(2, "--config-dir", config, "scan", sixteen)
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = subprocess.run([MODELREG, "--config-dir", str(config), "scan", str(sixteen)], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "16 new stub(s)" in again.stdout, again.stdout + again.stderr
    assert_every_model_stubbed(Registry(config))
    assert not (config / PENDING_STUBS_FILE).exists()


def test_a_scan_killed_at_any_write_point_owes_no_stub(tmp_path, sixteen):
    points = count_fsyncs(lambda: scan(Registry(tmp_path / "count", create=True), [sixteen]))
    assert points >= 8
    for n in range(1, points + 1):
        config = tmp_path / f"killed-{n}"
        assert run_in_child(lambda: scan(Registry(config, create=True), [sixteen]), kill_at_fsync=n) == -9
        assert_files_parse(config)
        registry = Registry(config)
        owed = {e["name"] for e in registry.discovered_entries()} - base_names(registry)
        again = scan(registry, [sixteen])
        assert len(registry.discovered_entries()) == 16, n
        assert_every_model_stubbed(registry)
        assert owed <= set(again.stubs), n  # the stubs the killed scan owed come from the next one
        assert all(e["metadata"]["_config_needed"] for e in registry.curated_entries()), n
        assert not temp_files(config) and not (config / PENDING_STUBS_FILE).exists()
        assert registry.snapshot_staleness() is None


def test_two_scans_at_once_keep_every_model(tmp_path):
    """The audit: two roots holding same-named models, scanned by two processes at once, kept 1 entry instead of 2."""
    roots = [gguf_models(tmp_path / f"root-{side}", 6) for side in "ab"]
    for round_ in range(4):
        config = tmp_path / f"config-{round_}"
        go_read, go_write = os.pipe()

        def scan_on_signal(root: Path) -> None:
            os.close(go_write)
            os.read(go_read, 1)  # both start at the same instant
            scan(Registry(config, create=True), [root])

        pids = []
        for root in roots:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    scan_on_signal(root)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(go_read)
        os.write(go_write, b"go")  # one byte each
        os.close(go_write)
        assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0]
        registry = Registry(config)
        discovered = registry.discovered_entries()
        assert len(discovered) == 12 and len({e["backend_config"]["model_path"] for e in discovered}) == 12
        assert_every_model_stubbed(registry)
        ports = [e["backend_config"]["port"] for e in registry.curated_entries()]
        assert len(set(ports)) == 12  # each stub got a port no other took
        assert len(registry.snapshot().entries) == 12 and registry.snapshot_staleness() is None


@pytest.fixture
def registry_dir(tmp_path) -> Path:
    folder = write_layers(tmp_path / "configs", [discovered_model(f"m{i}", f"/m/{i}") for i in range(3)],
                          [{"name": "m0", "backend": "vllm", "backend_config": {"port": 24001},
                            "generation_defaults": {"temperature": 0.2}}])
    Registry(folder).rebuild()
    return folder


def killed_sets(registry_dir: Path, tmp_path: Path, *argv: str):
    """(n, folder): a copy of the registry in which `modelreg ARGV` was SIGKILLed at its n-th fsync, for every n."""
    points = count_fsyncs(lambda: main(["--config-dir", str(shutil.copytree(registry_dir, tmp_path / "count")),
                                        *argv]))
    assert points >= 6
    for n in range(1, points + 1):
        folder = shutil.copytree(registry_dir, tmp_path / f"copy-{n}")
        assert run_in_child(lambda: main(["--config-dir", str(folder), *argv]), kill_at_fsync=n) == -9
        assert_files_parse(folder)
        yield n, folder


def test_a_killed_writer_leaves_temp_files_that_the_next_write_removes(registry_dir, tmp_path, capsys):
    """The audit: 48 kills left 28 `.tmp` files behind."""
    left_behind = 0
    for n, folder in killed_sets(registry_dir, tmp_path, "set", "m1", "generation_defaults.seed", "1"):
        if temp_files(folder):
            left_behind += 1
            assert cli(capsys, "--config-dir", folder, "list")[0] == 0 and temp_files(folder)  # reads touch none
        assert cli(capsys, "--config-dir", folder, "set", "m2", "roles", "chat")[0] == 0
        assert temp_files(folder) == [], n
    assert left_behind, "no kill landed between a temp file's write and its rename"


def test_a_stale_snapshot_after_an_interrupted_write_is_reported(registry_dir, tmp_path, capsys):
    """The audit: after an interrupted write, list, show and launch-cmd served the old snapshot in silence."""
    stale_seen = 0
    for n, folder in killed_sets(registry_dir, tmp_path, "set", "m0", "backend_config.extra_args", "--seed 1"):
        registry = Registry(folder)
        stale = registry.snapshot().revision != registry.merged().revision
        stale_seen += stale
        for command in (("list",), ("show", "m0"), ("launch-cmd", "m0")):
            code, _, err = cli(capsys, "--config-dir", folder, *command)
            assert code == 0 and ("snapshot on disk" in err) == stale, (n, command, err)
        if stale:  # a command that may write rebuilds it
            assert cli(capsys, "--config-dir", folder, "set", "m1", "roles", "chat")[0] == 0
            assert "snapshot on disk" not in cli(capsys, "--config-dir", folder, "list")[2]
            assert Registry(folder).snapshot().revision == Registry(folder).merged().revision
    assert stale_seen, "no kill landed between the curated write and the snapshot write"


def test_a_hand_edit_since_the_last_rebuild_is_reported(registry_dir, capsys):
    curated = registry_dir / CURATED_FILE
    curated.write_text(curated.read_text().replace("0.2", "0.7"))
    code, out, err = cli(capsys, "--config-dir", registry_dir, "show", "m0")
    assert code == 0 and "0.2" in out and "the curated layer changed since it was built" in err
    assert cli(capsys, "--config-dir", registry_dir, "rebuild")[0] == 0
    code, out, err = cli(capsys, "--config-dir", registry_dir, "show", "m0")
    assert "0.7" in out and err == ""
    code, out, err = cli(capsys, "--config-dir", registry_dir, "--profile", "gpu0", "list")
    assert "built for profile none, not gpu0" in err


def test_a_read_only_folder_gets_one_line_and_exit_2(registry_dir, tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    result = in_mount_namespace(f"""
        mount -t tmpfs -o size=4m none {mount}
        cp -a {registry_dir}/. {mount}/
        mount -o remount,ro {mount}
        rc=0; $MODELREG --config-dir {mount} set m0 generation_defaults.temperature 0.5 2>{tmp_path}/err || rc=$?
        echo "set=$rc"; cat {tmp_path}/err
        rc=0; $MODELREG --config-dir {mount} list >/dev/null || rc=$?
        echo "list=$rc"
        cmp {registry_dir}/{CURATED_FILE} {mount}/{CURATED_FILE} && echo unchanged
    """)
    out = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert out[0] == "set=2" and len(out) == 4, out
    assert "Read-only file system" in out[1] and out[1].startswith("modelreg: cannot ")
    assert out[2] == "list=0" and out[3] == "unchanged"


def test_a_full_disk_gets_one_line_and_exit_2_and_changes_nothing(registry_dir, tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    result = in_mount_namespace(f"""
        mount -t tmpfs -o size=512k none {mount}
        cp -a {registry_dir}/. {mount}/
        dd if=/dev/zero of={mount}/filler bs=4k 2>/dev/null || true
        rc=0; $MODELREG --config-dir {mount} set m0 generation_defaults.temperature 0.5 2>{tmp_path}/err || rc=$?
        echo "set=$rc"; cat {tmp_path}/err
        cmp {registry_dir}/{CURATED_FILE} {mount}/{CURATED_FILE} && echo unchanged
        find {mount} -name '*.tmp' | wc -l
    """)
    out = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert out[0] == "set=2" and len(out) == 4, out
    assert "No space left on device" in out[1] and "nothing was changed" in out[1]
    assert out[2:] == ["unchanged", "0"]


def test_a_file_size_limit_gets_one_line_and_exit_2(registry_dir):
    curated = registry_dir / CURATED_FILE
    write_layers(registry_dir, curated=[{"name": "m0", "backend": "vllm",
                                         "generation_defaults": {f"k{i}": "x" * 40 for i in range(200)}}])
    before = curated.read_bytes()
    limit = len(before) // 2

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([MODELREG, "--config-dir", str(registry_dir), "set", "m0", "generation_defaults.seed",
                             "1"], capture_output=True, text=True, preexec_fn=small_files, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "File too large" in result.stderr
    assert curated.read_bytes() == before and temp_files(registry_dir) == []


def test_a_symlinked_curated_file_is_written_through_the_link(registry_dir, tmp_path, capsys):
    """The audit: the first write replaced a symlinked curated file with a plain file."""
    elsewhere = tmp_path / "dotfiles" / CURATED_FILE
    elsewhere.parent.mkdir()
    shutil.move(registry_dir / CURATED_FILE, elsewhere)
    (registry_dir / CURATED_FILE).symlink_to(elsewhere)
    assert cli(capsys, "--config-dir", registry_dir, "set", "m1", "roles", "chat")[0] == 0
    assert (registry_dir / CURATED_FILE).is_symlink()
    assert {e["name"]: e for e in json.loads(elsewhere.read_text())}["m1"]["roles"] == ["chat"]
    assert Registry(registry_dir).entry("m1")["roles"] == ["chat"] and temp_files(tmp_path) == []


# ---- random operation sequences, each operation SIGKILLed at a random write point (or not) ---------------------------

MODELS = ("m0", "m1", "m2")
PATHS = ("generation_defaults.temperature", "roles", "backend_config.extra_args", "display_name")
STEP = st.tuples(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(MODELS), st.sampled_from(PATHS), st.integers(0, 9)),
    st.tuples(st.just("unset"), st.sampled_from(MODELS), st.sampled_from(PATHS)),
    st.tuples(st.just("scan"), st.sampled_from((0, 1))),
    st.tuples(st.just("stub"), st.sampled_from(("m1", "m2", "curated-only"))),
    st.tuples(st.just("migrate"),),
    st.tuples(st.just("restore"), st.integers(0, 3)),
    st.tuples(st.just("rebuild"),),
), st.one_of(st.none(), st.integers(1, 12)))
LEGACY = {"backend": "vllm", "backend_config": {"port": 24002}}  # config a legacy discovered file holds


def value_for(path: str, i: int) -> object:
    return {"generation_defaults.temperature": i / 10, "roles": [f"role{i}"],
            "backend_config.extra_args": ["--seed", str(i)], "display_name": f"Name {i}"}[path]


def curated_leaves(raw: bytes | None) -> dict[tuple, object]:
    """Each curated value by (model, profile, path); name and profile say whose values they are (an entry left with
    nothing else is removed, which loses nothing)."""
    return {(e["name"], e.get("profile"), path): value for e in json.loads(raw or b"[]")
            for path, value in flatten(e).items() if value not in (None, {}) and path not in ("name", "profile")}


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory) -> list[Path]:
    return [gguf_models(tmp_path_factory.mktemp(f"root{i}"), 2) for i in range(2)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=6))
@example(steps=[(("set", "m1", "roles", 0), None), (("unset", "m1", "roles"), None)])  # an entry left empty goes
def test_killed_operation_sequences_lose_nothing(tmp_path_factory, two_roots, steps):
    """set, unset, scan, stub, migrate, restore, rebuild, each maybe killed at a write point: every file parses, no
    curated value is lost (a replaced curated version is in history), no configuration enters discovered, every model
    a scan added gets its stub by the next completed scan, and the snapshot is reported stale exactly when it is."""
    folder = write_layers(tmp_path_factory.mktemp("ops"),
                          [discovered_model("m0", "/m/0"), discovered_model("m1", "/m/1"),
                           {**discovered_model("m2", "/m/2"), **LEGACY}],
                          [{"name": "m0", "backend": "vllm", "generation_defaults": {"top_k": 40}},
                           {"name": "m0", "profile": "gpu0", "backend_config": {"extra_args": ["--seed", "7"]}}])
    Registry(folder).rebuild()
    owed: set[str] = set()
    for (op, *args), kill_at in steps:
        registry = Registry(folder)
        before_raw = registry.curated_layer().raw
        before_names = {e["name"] for e in registry.discovered_entries()}
        items = registry.history_items()
        if op == "set":
            name, path, i = args
            action = lambda: registry.set_value(name, path, value_for(path, i))  # noqa: E731
        elif op == "unset":
            action = lambda: registry.unset_value(*args)  # noqa: E731
        elif op == "scan":
            action = lambda: scan(registry, [two_roots[args[0]]])  # noqa: E731
        elif op == "stub":
            action = lambda: registry.stub(args[0])  # noqa: E731
        elif op == "migrate":
            action = registry.migrate
        elif op == "restore":
            if args[0] >= len(items):
                continue
            action = lambda: registry.restore(items[args[0]].id)  # noqa: E731
        else:
            action = registry.rebuild
        code = run_in_child(action, kill_at_fsync=kill_at)
        assert code in (0, -9), (op, args, kill_at, code)

        assert_files_parse(folder)
        registry = Registry(folder)
        after_raw = registry.curated_layer().raw
        for entry in registry.discovered_entries():
            extra = {p for p in config_paths(entry)} - ({"backend", "backend_config.port"} if entry["name"] == "m2"
                                                        else set())
            assert not extra, f"configuration in discovered after {op}: {extra}"
        if after_raw != before_raw:  # the version a write replaced is kept
            kept = {registry.history.raw(item.id) for item in registry.history_items()}
            assert (before_raw or b"[]\n") in kept, (op, args, kill_at)
        if op not in ("restore",):
            changed = {(args[0], None, args[1])} if op in ("set", "unset") else set()
            lost = {key: value for key, value in curated_leaves(before_raw).items()
                    if curated_leaves(after_raw).get(key) != value and key not in changed
                    and not (op in ("set", "unset") and key[2] == "metadata._config_needed")
                    and not (op == "set" and key[0] == args[0] and key[2].startswith(args[1] + "."))}
            assert not lost, (op, args, kill_at, lost)
        if code == 0 and op == "set":
            assert registry.entry(args[0])[args[1].split(".")[0]] is not None
        owed |= {e["name"] for e in registry.discovered_entries()} - before_names
        owed -= {e["name"] for e in registry.curated_entries() if e.get("profile") is None}
        if code == 0 and op == "scan":
            assert not owed, f"models a scan added have no stub: {owed}"
        if code == 0:
            assert not temp_files(folder), (op, kill_at)
        stale = registry.snapshot().revision != registry.merged().revision
        assert (registry.snapshot_staleness() is not None) == stale, (op, args, kill_at)
