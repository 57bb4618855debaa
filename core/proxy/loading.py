"""What a streamed request shows while its model starts: progress read from the backend's log as `reasoning_content`
chunks that chat UIs show (as llama-swap's `sendLoadingState`), `: loading` SSE comments, or nothing."""
from __future__ import annotations

import os
import re
import secrets
import time

import orjson

from modelreg.fields import LOADING_STATES
from modelreg.launch.running.logs import LogFollower
from modelreg.settings import Settings

# where `reasoning` applies (OpenAI chunks); other streams (Responses, Anthropic Messages) get comments
REASONING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
LINE_AT_MOST = 160

# The prefixes backends put before a message: llama-server's `0.00.008.995 I srv    load_model: ` (time and level;
# the `srv` tag is kept), vLLM's `(APIServer pid=12) INFO 12-05 18:04:34 [api_utils.py:347] `, torch's
# `W1205 18:04:33.938000 2629 torch/_library/triton.py:53] `.
_PREFIXES = re.compile(r"^(?:\d+\.\d+\.\d+\.\d+ [IWEDT] +"
                       r"|\([\w-]+ pid=\d+\) [A-Z]+ \d\d-\d\d \d\d:\d\d:\d\d \[[^\]]*\] "
                       r"|[IWEF]\d{4} [\d:.]+ +\d+ [^\]]*\] )")
# tqdm's bar, as vLLM prints it: `Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01, ...]`
_TQDM = re.compile(r"(?P<what>[A-Za-z][\w ()-]*?):\s+(?P<percent>\d{1,3})%(?:\s*Completed)?\s*\|\s*(?P<count>\d+/\d+)?")
# llama.cpp's default load progress: one dot per percent of the tensors loaded, on a line of its own
_DOTS = re.compile(r"^\.+$")
_LETTERS = re.compile(r"[A-Za-z]{3}")


def loading_state(entry: dict | None, settings: Settings, path: str) -> str:
    """The model's `backend_config.loading_state`, else the setting; `reasoning` becomes `comments` on a path whose
    stream is not made of OpenAI chunks."""
    chosen = ((entry or {}).get("backend_config") or {}).get("loading_state")
    state = chosen if chosen in LOADING_STATES else settings.loading_state
    return "comments" if state == "reasoning" and path not in REASONING_PATHS else state


def message_of(line: str) -> str:
    """A log line without the backend's time and level prefix; '' for one that says nothing (blank, art, dots)."""
    text = _PREFIXES.sub("", line.strip()).strip()
    if not _LETTERS.search(text) or text.startswith("Route: "):
        return ""
    return text if len(text) <= LINE_AT_MOST else text[:LINE_AT_MOST - 1] + "…"


class LoadWatch:
    """Follows a starting backend's log: its last meaningful line and the load progress it shows (vLLM's tqdm bars,
    llama.cpp's progress dots). Unless `from_start` (the start is already under way), only what is written after the
    watch began counts: a start rotates the log, and the new file is read from its beginning."""

    def __init__(self, path: str | os.PathLike, from_start: bool = False):
        self.began = time.monotonic()
        self._log = LogFollower(path) if from_start else LogFollower.at_end(path)
        self.line = ""  # the last meaningful line
        self.progress = ""  # e.g. "Loading safetensors checkpoint shards 50 % (1/2)"
        self._finished = False  # the progress shown reached 100 %

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def look(self) -> None:
        """Read what the log gained since the last look (a tqdm bar redraws its line after a carriage return)."""
        for piece in self._log.read_new().splitlines():
            self._read(piece, complete=True)
        growing = self._log.partial.rsplit("\r", 1)[-1]
        if growing:
            self._read(growing, complete=False)  # a bar or a line of dots still growing

    def _read(self, piece: str, complete: bool) -> None:
        bar = _TQDM.search(piece)
        if bar:
            count = f" ({bar['count']})" if bar["count"] else ""
            self._progress(f"{bar['what'].strip()} {{}} %{count}", int(bar["percent"]))
            return
        if _DOTS.match(piece.strip()):
            self._progress("loading tensors {} %", len(piece.strip()))
            return
        message = message_of(piece) if complete else ""
        if message:
            self.line = message
            if self._finished:  # the bar is full: the next step speaks for itself
                self.progress, self._finished = "", False

    def _progress(self, template: str, percent: int) -> None:
        percent = min(percent, 100)
        self.progress, self._finished = template.format(percent), percent == 100

    def status(self) -> str:
        """What the start is doing now: its progress, else its last meaningful line ('' while the log is empty)."""
        return self.progress or self.line


class LoadingEvents:
    """The SSE events of one cold streamed request while its model starts, in its endpoint's chunk format: chat
    completions get `chat.completion.chunk`s whose `delta.reasoning_content` carries the text, text completions
    `text_completion` chunks with an empty `text` and the text in `reasoning_content`."""

    def __init__(self, path: str, model: str, name: str, watch: LoadWatch):
        self.chat = path != "/v1/completions"
        self.model, self.name, self.watch = model, name, watch
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + "loading-" + secrets.token_hex(8)
        self.created = int(time.time())
        self._shown = ""
        self._seconds_shown = 0

    def event(self, text: str) -> bytes:
        if self.chat:
            choice = {"index": 0, "delta": {"role": "assistant", "reasoning_content": text}, "finish_reason": None}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": "", "reasoning_content": text, "logprobs": None, "finish_reason": None}
            kind = "text_completion"
        return b"data: " + orjson.dumps({"id": self.id, "object": kind, "created": self.created,
                                         "model": self.model, "choices": [choice]}) + b"\n\n"

    def opening(self) -> bytes:
        return self.event(f"Loading {self.name}…\n")

    def tick(self) -> bytes:
        """A new line when the log says something new, else a dot (and the seconds every 5 s)."""
        self.watch.look()
        status, seconds = self.watch.status(), int(self.watch.elapsed)
        if status and status != self._shown:
            self._shown, self._seconds_shown = status, seconds
            return self.event(f"\n[{seconds} s] {status}")
        if seconds >= self._seconds_shown + 5:
            self._seconds_shown = seconds
            return self.event(f" {seconds} s")
        return self.event(".")

    def ready(self) -> bytes:
        return self.event(f"\n{self.name} ready after {self.watch.elapsed:.1f} s\n\n")
