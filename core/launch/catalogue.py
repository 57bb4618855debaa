"""Each backend's flags (spellings, values), read from the installed program's help and cached per executable."""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Callable, TypedDict

from modelreg.errors import RegistryError
from modelreg.launch.backends import LLAMA_CPP, LLAMA_CPP_PYTHON, VLLM
from modelreg.launch.lifetime import tied_popen
from modelreg.store import atomic_write, file_stamp, user_cache_dir

# How many values a flag takes.
NONE, ONE, TWO, OPTIONAL, MANY = "none", "one", "two", "optional", "many"


@dataclass(frozen=True)
class Flag:
    """One flag: its canonical spelling (the first long one), every spelling, and how many values it takes."""

    name: str
    spellings: tuple[str, ...]
    values: str = NONE

    @property
    def takes_value(self) -> bool:
        return self.values != NONE


@dataclass(frozen=True)
class Resolved:
    """What one flag token names: the flag (None when unknown), and how its spelling was read."""

    spelling: str                      # the token's flag part (before `=`)
    flag: Flag | None
    how: str                           # exact | underscore | prefix | dotted | attached | unknown | ambiguous
    attached: str | None = None        # a value given in the token itself (`--flag=value`, `-O3`)
    candidates: tuple[str, ...] = ()   # ambiguous: the flags a prefix could mean; unknown: the closest spellings


@dataclass(frozen=True)
class Catalogue:
    """The flags of one backend program, and the argument rules of its parser."""

    backend: str
    program: str                       # e.g. `vllm serve`
    version: str
    source: str                        # the command the flags were read with
    flags: tuple[Flag, ...]
    abbreviations: bool = False        # argparse: an unambiguous prefix of a spelling names that flag
    underscores: bool = False          # `_` in a long flag's name reads as `-`
    equals: bool = True                # `--flag=value` gives the value in the same token
    dotted: bool = False               # vLLM: `--json-flag.key value` sets one key of a JSON flag
    notes: tuple[str, ...] = field(default=(), compare=False)

    @cached_property
    def by_spelling(self) -> dict[str, Flag]:
        return {spelling: flag for flag in self.flags for spelling in flag.spellings}

    def get(self, name: str) -> Flag | None:
        return self.by_spelling.get(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = [[f.name, list(f.spellings), f.values] for f in self.flags]
        data.pop("notes")
        return data

    def dumps(self) -> str:
        """The catalogue as JSON with one flag per line (the committed files: small diffs when a backend changes)."""
        data = self.to_dict()
        flags = ",\n".join("  " + json.dumps(flag) for flag in data.pop("flags"))
        head = json.dumps(data, indent=1)[:-2]
        return f'{head},\n "flags": [\n{flags}\n ]\n}}\n'

    @classmethod
    def from_dict(cls, data: dict[str, Any], **changes: Any) -> "Catalogue":
        flags = tuple(Flag(name, tuple(spellings), values) for name, spellings, values in data["flags"])
        return cls(**{**data, "flags": flags, **changes})

    def _normal(self, spelling: str) -> str:
        if self.underscores and spelling.startswith("--"):
            head, dot, tail = spelling[2:].partition(".")
            return "--" + head.replace("_", "-") + dot + tail
        return spelling

    def resolve(self, token: str, suggest: bool = True) -> Resolved:
        """The flag a token names, as the backend's own parser reads it; `suggest`: find the closest spellings of an
        unknown one (difflib: milliseconds per token, which a lookup such as `flag_value` does not need)."""
        spelling, attached = token, None
        if self.equals and token.startswith("--") and "=" in token:
            spelling, attached = token.split("=", 1)
        name = self._normal(spelling)
        renamed = "underscore" if name != spelling else "exact"
        if name in self.by_spelling:
            return Resolved(spelling, self.by_spelling[name], renamed, attached)
        if self.dotted and "." in name:
            flag = self.by_spelling.get(name.split(".", 1)[0])
            if flag is not None and flag.takes_value:
                return Resolved(spelling, flag, "dotted", attached)
        if self.abbreviations and not name.startswith("--") and len(name) > 2:
            flag = self.by_spelling.get(name[:2])
            if flag is not None and flag.takes_value and attached is None:
                return Resolved(spelling, flag, "attached", name[2:])
        if self.abbreviations:
            matches = [s for s in self.by_spelling if s.startswith(name) and (s[1] == "-") == (name[1:2] == "-")]
            if len(matches) == 1:
                return Resolved(spelling, self.by_spelling[matches[0]], "prefix", attached)
            if len(matches) > 1:
                return Resolved(spelling, None, "ambiguous", attached, tuple(sorted(matches)))
        return Resolved(spelling, None, "unknown", attached, self.closest(name) if suggest else ())

    def closest(self, spelling: str, count: int = 1) -> tuple[str, ...]:
        """The known spellings most like an unknown one (`--max-model-length` -> `--max-model-len`)."""
        longs = [s for s in self.by_spelling if s.startswith("--") == spelling.startswith("--")]
        return tuple(difflib.get_close_matches(self._normal(spelling), longs, n=count, cutoff=0.6))


# ---- help output parsers ----------------------------------------------------------------------------------------

_ARGPARSE_OPTION = re.compile(r"^  (-{1,2}[A-Za-z0-9][\w.-]*(?:[ ,].*?)?)(?:  +\S.*)?$")
_SPELLING = re.compile(r"-{1,2}[A-Za-z0-9][\w.-]*")


def _argparse_values(args: str) -> str:
    """argparse writes nargs as `X` (one), `[X]` (optional), `X [X ...]` / `[X ...]` (many), `X X` (two); a metavar
    may itself hold brackets or spaces (vLLM writes choices as `['auto', 'hf']`)."""
    if not args:
        return NONE
    if re.fullmatch(r"(?:\S+ )?\[\S+ \.\.\.\]", args):
        return MANY
    if re.fullmatch(r"\[[\w-]+\]", args):
        return OPTIONAL
    if re.fullmatch(r"[A-Z0-9_]+ [A-Z0-9_]+", args):
        return TWO
    return ONE


def parse_argparse_help(text: str) -> list[Flag]:
    """Flags from Python argparse `--help` output: `  --name METAVAR, -n METAVAR   help` lines (the options'
    invocations start at column 3; help text and group descriptions are indented further or start with a letter)."""
    flags: list[Flag] = []
    for line in text.splitlines():
        match = _ARGPARSE_OPTION.match(line)
        if not match:
            continue
        invocation = match.group(1).strip()
        parts = re.split(r", (?=-)", invocation)
        spellings, values = [], NONE
        for part in parts:
            spelling, _, args = part.partition(" ")
            if not _SPELLING.fullmatch(spelling):
                break
            spellings.append(spelling)
            if args.strip():
                values = _argparse_values(args.strip())
        else:
            if "-h" in spellings or "--help" in spellings:
                continue
            name = next((s for s in spellings if s.startswith("--")), spellings[0])
            flags.append(Flag(name, tuple(spellings), values))
    return flags


_LLAMA_OPTION = re.compile(r"^(-{1,2}[A-Za-z0-9][\w.-]*(?:, *-{1,2}[A-Za-z0-9][\w.-]*)*)(?: ([^ ].*?))?(?:  +\S.*)?$")


def parse_llama_help(text: str) -> list[Flag]:
    """Flags from llama.cpp's `--help`: `-c,    --ctx-size N     help` lines at column 1; every spelling of one
    argument is listed with its negative forms (`--mmap, --no-mmap`), then its value hints (one or two)."""
    flags: list[Flag] = []
    for line in text.splitlines():
        match = _LLAMA_OPTION.match(line)
        if not match:
            continue
        spellings = [s.strip() for s in match.group(1).split(",")]
        hints = (match.group(2) or "").split()
        if "-h" in spellings or "--help" in spellings:
            continue
        values = NONE if not hints else TWO if len(hints) == 2 else ONE
        name = next((s for s in spellings if s.startswith("--")), spellings[0])
        flags.append(Flag(name, tuple(spellings), values))
    return flags


# ---- reading a backend's catalogue: from the installed program (cached), else the committed one ---------------

class ParserRules(TypedDict, total=False):
    """The argument rules of a program's parser (see Catalogue)."""

    abbreviations: bool
    underscores: bool
    equals: bool
    dotted: bool


@dataclass(frozen=True)
class Reader:
    """How to read one backend program's flags and version."""

    program: str
    help_args: tuple[str, ...]         # after the executable
    version_args: tuple[str, ...]
    parse: Callable[[str], list[Flag]]
    rules: ParserRules
    # spellings the program accepts that its help does not list (canonical flag -> spellings)
    unlisted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the version command is fast (milliseconds): the cache is then keyed by version, not by the file's stamp
    cheap_version: bool = True


READERS: dict[str, Reader] = {
    # vLLM's FlexibleArgumentParser: argparse (prefixes), `_` for `-` in long names, `--json-flag.key value`, and
    # `-O3` / `-O 3` rewritten to `--optimization-level 3`
    VLLM: Reader("vllm serve", ("serve", "--help=all"), ("--version",), parse_argparse_help,
                 {"abbreviations": True, "underscores": True, "dotted": True},
                 unlisted={"--optimization-level": ("-O",)}, cheap_version=False),
    # llama.cpp's common/arg.cpp: exact spellings only, `_` read as `-` in long names, no `--flag=value`
    LLAMA_CPP: Reader("llama-server", ("--help",), ("--version",), parse_llama_help,
                      {"underscores": True, "equals": False}),
    # llama_cpp.server: plain argparse with the settings' field names (`--n_ctx`), so prefixes but no `-` for `_`
    LLAMA_CPP_PYTHON: Reader("llama_cpp.server", ("-m", "llama_cpp.server", "--help"),
                             ("-c", "import importlib.metadata as m; print(m.version('llama_cpp_python'))"),
                             parse_argparse_help, {"abbreviations": True}),
}
COMMITTED = Path(__file__).with_name("catalogues")
# `vllm serve --help=all` imports vLLM: 22 s on an idle 2-core machine. A program that takes longer is checked against
# the committed catalogue, and not asked again for FAILED_READ_MEMORY seconds (by any process: `set` after `set`).
READ_TIMEOUT = 30.0
FAILED_READ_MEMORY = 60.0
_memo: dict[str, Catalogue] = {}
_reading: dict[str, threading.Lock] = {}  # one lock per program being read, by the same key
_failed: dict[str, dict[str, Any]] = {}  # failed reads, by the same key


def _start(argv: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    return tied_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                      env=env, start_new_session=True)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    import subprocess

    try:
        out, err = process.communicate(timeout=READ_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"`{shlex.join(process.args)}` did not answer within {READ_TIMEOUT:.0f} s "  # type: ignore
                           "(killed)") from None
    return process.returncode, out, err


def _version(backend: str, out: str, err: str) -> str:
    if backend == LLAMA_CPP:  # `version: 1 (abc1234)` then the compiler's own version
        found = re.search(r"^version: (.+)$", err + out, re.MULTILINE)
        return found.group(1).strip() if found else ""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def program_version(backend: str, executable: str) -> str:
    """The version a backend program reports ('' when it says none)."""
    if backend == LLAMA_CPP_PYTHON and os.path.abspath(executable) == os.path.abspath(sys.executable):
        # this very interpreter (the default setting): its answer without starting it again, which took every
        # command that plans a launch (`modelreg list` too) tens of milliseconds
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("llama_cpp_python")
        except PackageNotFoundError:
            return ""
    _code, out, err = _finish(_start([executable, *READERS[backend].version_args]))
    return _version(backend, out, err)


def read_catalogue(backend: str, executable: str, version: str | None = None) -> Catalogue:
    """Run the program's help (and its version, side by side) and read its flags; RuntimeError when it fails or
    lists none."""
    reader = READERS[backend]
    argv = [executable, *reader.help_args]
    versioning = _start([executable, *reader.version_args]) if version is None else None
    try:
        code, out, err = _finish(_start(argv))
        if versioning is not None:
            version = _version(backend, *_finish(versioning)[1:])
    finally:
        if versioning is not None and versioning.poll() is None:
            os.killpg(versioning.pid, signal.SIGKILL)
            versioning.communicate()
    flags = reader.parse(out)
    if code != 0 or len(flags) < 10:
        raise RuntimeError(f"`{shlex.join(argv)}` exited {code} and listed {len(flags)} flags: "
                           f"{(err or out).strip()[-300:]}")
    flags = [Flag(f.name, f.spellings + reader.unlisted.get(f.name, ()), f.values) for f in flags]
    return Catalogue(backend, reader.program, version or "", " ".join([Path(executable).name, *reader.help_args]),
                     tuple(flags), **reader.rules)


@cache
def committed_catalogue(backend: str) -> Catalogue | None:
    """The catalogue generated from the real program and committed with modelreg (`.ci/flag_catalogues.py`)."""
    path = COMMITTED / f"{backend}.json"
    if not path.is_file():
        return None
    return Catalogue.from_dict(json.loads(path.read_text(encoding="utf-8")))


def catalogue_for(backend: str, executable: str | None) -> Catalogue | None:
    """The flags of the program that would run: read from the installed executable (once per path and version,
    kept in the per-user cache), else the committed catalogue with a note saying so; None for a backend without one
    (Ollama)."""
    if backend not in READERS:
        return None
    found = shutil.which(executable) if executable else None
    if found is None:
        key = json.dumps([backend, executable, None])
        if key not in _memo:
            committed = committed_catalogue(backend)
            if committed is None:
                return None
            _memo[key] = replace(committed, notes=(
                f"{executable or backend} is not installed here: flags are checked against {committed.program} "
                f"{committed.version}, whose catalogue ships with modelreg",))
        return _memo[key]
    # run it as found (a venv's python is a link that only works by its own path); key the cache by what it links
    # to, so that clones at other paths share one reading
    program, real = os.path.abspath(found), os.path.realpath(found)
    stamp = list(file_stamp(Path(real)) or ())
    memo_key = json.dumps([backend, program, stamp])
    if memo_key in _memo:
        return _memo[memo_key]
    with _reading.setdefault(memo_key, threading.Lock()):  # threads asking for one program share one read
        if memo_key in _memo:
            return _memo[memo_key]
        return _read_installed(backend, program, real, stamp, memo_key)


def _read_installed(backend: str, program: str, real: str, stamp: list[int], memo_key: str) -> Catalogue | None:
    reader = READERS[backend]
    cache = user_cache_dir() / "flags" / f"{backend}-{hashlib.sha1(real.encode()).hexdigest()[:16]}.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = None
    if not isinstance(cached, dict):
        cached = {}
    failed = cached.get("failed")
    if not isinstance(failed, dict) or failed.get("stamp") != stamp:
        failed = _failed.get(memo_key)  # this process's, when the cache could not be written
    if failed and 0 <= time.time() - float(failed.get("at", 0)) < FAILED_READ_MEMORY:
        return _committed_instead(backend, program, str(failed.get("reason")))
    try:
        version = program_version(backend, program) if reader.cheap_version else None
        identity = [real, version if reader.cheap_version else stamp]
        catalogue = None
        if cached.get("identity") == identity:
            try:
                catalogue = Catalogue.from_dict(cached["catalogue"])
            except (KeyError, TypeError, ValueError):
                pass
        if catalogue is None:
            catalogue = read_catalogue(backend, program, version)
            _remember(cache, {"identity": identity, "catalogue": catalogue.to_dict()})
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        _failed[memo_key] = {"stamp": stamp, "at": time.time(), "reason": str(exc)}
        _remember(cache, {"failed": _failed[memo_key]})
        return _committed_instead(backend, program, str(exc))
    _memo[memo_key] = catalogue
    return catalogue


def _committed_instead(backend: str, program: str, reason: str) -> Catalogue | None:
    committed = committed_catalogue(backend)
    if committed is None:
        return None
    return replace(committed, notes=(f"could not read the flags of {program} ({reason}); they are checked against "
                                     f"{committed.program} {committed.version} instead",))


def _remember(cache: Path, record: dict[str, Any]) -> None:
    try:
        atomic_write(cache, (json.dumps(record) + "\n").encode())
    except RegistryError:
        pass  # a read-only home: the next process reads the program again
