"""The package's rooms: imports only point down, no cycles, UI and CLI libraries stay in their rooms, one name
per module, and every setting documented."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"modelreg": ROOT / "core", "modelreg.gui": ROOT / "gui"}

# Lowest first. A module may import its own room, and rooms of a lower rank; never a sibling of its rank or anything
# above. The engine (the first five ranks) therefore imports nothing from discovery, download, launch, proxy, views,
# cli or gui.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("modelreg.errors", "modelreg.paths", "modelreg.jobs"),
    ("modelreg.fields", "modelreg.values", "modelreg.store"),
    ("modelreg.entry_model",),
    ("modelreg.settings", "modelreg.schema", "modelreg.merge", "modelreg.history"),
    ("modelreg.build", "modelreg.settings_view"),
    ("modelreg.registry", "modelreg.watch"),
    ("modelreg",),  # the package itself: the public API
    ("modelreg.launch",),  # what each backend accepts: its spec, flag catalogue and extra_args parser
    ("modelreg.launch.advice",),
    ("modelreg.launch.planning",),
    ("modelreg.launch.running",),
    ("modelreg.discovery",),
    ("modelreg.download",),
    ("modelreg.proxy",),
    ("modelreg.hosts",),
    ("modelreg.views",),
    ("modelreg.cli", "modelreg.gui"),
    ("modelreg.__main__",),
)
# Third-party libraries that belong to one room only.
ROOM_ONLY = {"argparse": "modelreg.cli", "rich": "modelreg.cli", "streamlit": "modelreg.gui", "pandas": "modelreg.gui"}


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by its one import name."""
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if package == "modelreg" and parts[:1] == ["gui"]:
                continue
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports anywhere in its file (inside functions too), resolved to an import name."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in known else module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def room_of(module: str) -> str | None:
    rooms = [room for rank in LAYERS for room in rank if module == room or module.startswith(room + ".")]
    return max(rooms, key=len) if rooms else None


def rank_of(room: str) -> int:
    return next(i for i, rank in enumerate(LAYERS) if room in rank)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up or sideways between rooms, as 'a -> b' lines."""
    bad = []
    for module, targets in graph.items():
        room = room_of(module)
        assert room is not None, f"{module} is in no room of LAYERS: add it"
        for target in sorted(targets):
            target_room = room_of(target)
            if target_room is None or target_room == room:
                continue
            if rank_of(target_room) >= rank_of(room):
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_checker_finds_a_cycle_and_an_upward_import():
    """A store that imported the registry would close a cycle (store -> registry -> store) and point up."""
    graph = {"modelreg.store": {"modelreg.errors", "modelreg.registry"},
             "modelreg.registry": {"modelreg.store"}, "modelreg.errors": set(),
             "modelreg.launch.planning.plan": {"modelreg.discovery.scan"}, "modelreg.discovery.scan": set()}
    assert import_cycles(graph) == [["modelreg.registry", "modelreg.store"]]
    assert upward_imports(graph) == ["modelreg.launch.planning.plan -> modelreg.discovery.scan",
                                     "modelreg.store -> modelreg.registry"]


def test_imports_only_point_down():
    graph = import_graph()
    assert len(graph) > 40
    assert upward_imports(graph) == []


def test_no_import_cycles_counting_imports_inside_functions():
    assert import_cycles(import_graph()) == []


@pytest.mark.parametrize("library, room", sorted(ROOM_ONLY.items()))
def test_libraries_stay_in_their_room(library, room):
    users = sorted(module for module, targets in import_graph().items()
                   if any(t == library or t.startswith(library + ".") for t in targets))
    assert users and all(room_of(m) == room for m in users), f"{library} imported outside {room}: {users}"


def test_installed_as_one_package():
    """The import name is modelreg; nothing is importable as top-level core or gui, or tests.support."""
    import modelreg

    assert Path(modelreg.__file__).resolve() == ROOT / "core" / "__init__.py"
    assert {"Registry", "Snapshot", "RegistryError", "InvalidRegistry"} <= set(modelreg.__all__)
    assert modelreg.Registry.__module__ == "modelreg.registry"
    script = ("import importlib.util, sys\n"
              "print([n for n in ('core', 'gui', 'tests') if importlib.util.find_spec(n)])")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_tests_import_their_support_by_one_name():
    assert not [m for m in sys.modules if m.split(".")[0] in ("core", "gui", "tests")]


HEAVY = {"gguf", "numpy", "huggingface_hub", "httpx", "aiohttp", "fastapi", "starlette", "uvicorn", "rich", "pydantic",
         "psutil", "watchdog", "ollama", "streamlit", "yaml"}


def heavy_modules_after(*argv: str, config_dir: Path, env: dict[str, str] | None = None) -> set[str]:
    script = ("import sys, runpy\n"
              f"sys.argv = ['modelreg', '--config-dir', {str(config_dir)!r}, *{list(argv)!r}]\n"
              "try:\n    runpy.run_module('modelreg', run_name='__main__')\n"
              "except SystemExit:\n    pass\n"
              "print('LOADED', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    loaded = proc.stdout.rsplit("LOADED", 1)[1].split()
    return set(loaded) & HEAVY


def test_cli_loads_heavy_libraries_only_where_used(tmp_path):
    """`--help` and `list` load none of them; `set` on a registry with an Ollama entry loads pydantic (the entry's
    model checks what it writes), never rich (into a pipe `list` prints plain columns), the Ollama client or httpx:
    the launch check reads the client's option names from a per-user cache, which one start fills and the next reads
    (also when another environment of the same user, with its own client, has filled the cache too); the settings'
    validated values come from a per-user cache too, filled by the first start that reads that settings file."""
    config = tmp_path / "configs"
    config.mkdir()
    (config / "model_registry.curated.json").write_text(
        '[{"name": "m", "backend": "vllm", "backend_config": {"port": 24001, "model_path": "/m"}},\n'
        ' {"name": "o", "backend": "ollama", "backend_config": {"port": 11434, "model_path": "o:latest", '
        '"extra_args": ["--num_ctx", "2048"]}}]\n')
    (config / "settings.json").write_text('{"gpu_memory": "24GiB", "hosts": {"b": {"url": "http://b:8100"}}}')
    cache = {"MODELREG_CACHE": str(tmp_path / "cache")}
    assert heavy_modules_after("--help", config_dir=config, env=cache) == set()
    heavy_modules_after("list", config_dir=config, env=cache)  # fills the cache
    # another environment (its own client) wrote its cache since
    (tmp_path / "cache" / "ollama-options.json").write_text('{"key": "another client", "options": []}')
    assert heavy_modules_after("set", "m", "display_name", "M", config_dir=config, env=cache) == {"pydantic"}
    assert heavy_modules_after("list", config_dir=config, env=cache) == set()  # a pipe: plain, no rich


def test_gui_reads_no_registry_files():
    for path in (ROOT / "gui").rglob("*.py"):
        text = path.read_text()
        assert "model_registry" not in text and "json.load" not in text, f"{path} reads registry files itself"


def test_the_upstream_corpus_is_read_from_the_repository():
    """The tests read the upstream registry files from tests/fixtures, so a plain clone passes."""
    from support.layers import UPSTREAM

    assert UPSTREAM.is_relative_to(ROOT / "tests" / "fixtures")
    assert (UPSTREAM / "model_registry.curated.json").is_file()
