"""What each proxied request did (model, time to first token, tokens, speed, status, cancelled): a ring in memory, a
rotating JSONL file beside the backend logs, and Prometheus metrics."""
from __future__ import annotations

import collections
import math
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelreg.launch.running.logs import read_tail

if TYPE_CHECKING:
    import aiohttp

    from modelreg.proxy.pool import BackendPool

ACTIVITY_FILE = "activity.jsonl"
SEEN_BYTES = 4096  # how much of a stream's end is kept: its last chunks carry `usage` and llama-server's `timings`
FIELD_WINDOW = 1024  # how far past `"usage"` / `"timings"` their numbers are read
# a key outside any JSON string (inside one its quotes would be escaped) and its number
NUMBER_FIELD = re.compile(rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens|cache_n|prompt_n|'
                          rb'predicted_n|predicted_per_second)"\s*:\s*(-?[0-9][0-9.eE+-]*)')
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def _fields(data: bytes, key: bytes) -> dict[bytes, bytes]:
    """The numbers (as written) in the last `"<key>": {...}` object of `data`."""
    at = data.rfind(key)
    return dict(NUMBER_FIELD.findall(data, at, at + FIELD_WINDOW)) if at >= 0 else {}


def _number(fields: dict[bytes, bytes], *keys: bytes) -> float | None:
    """The first of `keys` that `fields` holds, as a number; None for none, or one that is no count (negative,
    not finite)."""
    for key in keys:
        if key in fields:
            try:
                number = float(fields[key])
            except ValueError:
                return None
            return number if 0 <= number < math.inf else None
    return None


def token_counts(data: bytes) -> tuple[int | None, int | None, float | None]:
    """(prompt tokens, completion tokens, llama-server's generation speed) from an answer's bytes or a stream's end:
    OpenAI's `usage` (`input_tokens`/`output_tokens` for /v1/messages and /v1/responses), else llama-server's
    `timings` (`cache_n + prompt_n`, `predicted_n`). None where the backend did not say."""
    usage, timings = _fields(data, b'"usage"'), _fields(data, b'"timings"')
    prompt = _number(usage, b"prompt_tokens", b"input_tokens")
    if prompt is None and b"prompt_n" in timings:
        prompt = (_number(timings, b"prompt_n") or 0) + (_number(timings, b"cache_n") or 0)
    completion = _number(usage, b"completion_tokens", b"output_tokens")
    if completion is None:
        completion = _number(timings, b"predicted_n")
    return (None if prompt is None else int(prompt), None if completion is None else int(completion),
            _number(timings, b"predicted_per_second"))


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds")


class Measured:
    """What one request did, filled in while it is relayed (the base of relay.Exchange)."""

    def __init__(self, name: str, path: str):
        self.name, self.path = name, path
        self.upstream: aiohttp.ClientResponse | None = None
        self.began, self.began_at = time.perf_counter(), time.time()
        self.first_at: float | None = None  # when a relayed stream's first chunk came (perf_counter)
        self.seen = b""  # the answer, or a stream's last bytes: where its usage and timings are
        self.status: int | None = None  # the proxy's own answer where it is not the backend's (an error, 499)
        self.cancelled = False  # the client left before the answer ended


class BackendCollector(Collector):
    """The pool's state, read when /metrics is scraped: the backends running (by state) and starts per model."""

    def __init__(self, pool: BackendPool):
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("modelreg_backends_running", "Backends the proxy runs, by model and state "
                                    "(starting, ready, stopping).", labels=["model", "state"])
        for name, run in sorted(self.pool.running.items()):
            running.add_metric([name, run.state], 1)
        yield running
        starts = CounterMetricFamily("modelreg_backend_starts", "Backend starts per model (failed ones too).",
                                     labels=["model"])
        for name, count in sorted(self.pool.starts.items()):
            starts.add_metric([name], count)
        yield starts


class Activity:
    """The record of every request routed to a model: the last `limit` in memory (`recent`), all of them appended to
    `<log_dir>/activity.jsonl` (rotated to `activity.jsonl.1` past `max_bytes`), and counted in `registry`."""

    def __init__(self, log_dir: Path, limit: int, max_bytes: int, pool: BackendPool):
        self.path = Path(log_dir) / ACTIVITY_FILE
        self.rotated = self.path.with_name(ACTIVITY_FILE + ".1")
        self.max_bytes = max_bytes
        self.ring: collections.deque[dict[str, Any]] = collections.deque(self._earlier(limit), maxlen=limit)
        self.next_id = self.ring[-1]["id"] + 1 if self.ring else 1
        self._fd: int | None = None
        self._size = 0
        self.registry = CollectorRegistry(auto_describe=True)  # per app: tests run many proxies in one process
        labels = ["model"]
        self.requests = Counter("modelreg_requests", "Requests routed to a model, by answer status.",
                                ["model", "status"], registry=self.registry)
        self.cancelled = Counter("modelreg_requests_cancelled", "Requests whose client left before the answer "
                                 "ended.", labels, registry=self.registry)
        self.prompt_tokens = Counter("modelreg_prompt_tokens", "Prompt tokens, as the backends reported them.",
                                     labels, registry=self.registry)
        self.completion_tokens = Counter("modelreg_completion_tokens", "Completion tokens, as the backends reported "
                                         "them.", labels, registry=self.registry)
        self.ttft = Histogram("modelreg_time_to_first_token_seconds", "Seconds from a streamed request to its first "
                              "chunk (a cold start included).", labels, registry=self.registry, buckets=TTFT_BUCKETS)
        self.duration = Histogram("modelreg_request_duration_seconds", "Seconds from a request to the end of its "
                                  "answer.", labels, registry=self.registry, buckets=DURATION_BUCKETS)
        self.registry.register(BackendCollector(pool))
        self.children: dict[tuple[Any, tuple[str, ...]], Any] = {}  # labels() validates and locks on every call

    def _earlier(self, limit: int) -> list[dict[str, Any]]:
        """The last records the files already hold (a restarted proxy shows its earlier activity)."""
        kept = []
        text = "\n".join(read_tail(path, limit, max_bytes=limit * 512) for path in (self.rotated, self.path))
        for line in text.splitlines()[-limit:]:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut by a crash
            if isinstance(record, dict) and isinstance(record.get("id"), int):
                kept.append(record)
        return kept

    def record(self, exchange: Measured) -> None:
        """Record one finished request (called once, when its Exchange closes)."""
        ended = time.perf_counter()
        upstream = exchange.upstream
        status = exchange.status or (upstream.status if upstream is not None else 500)
        streamed = upstream is not None and upstream.content_type == "text/event-stream"
        prompt, completion, speed = token_counts(exchange.seen) if exchange.seen else (None, None, None)
        first = exchange.first_at if streamed and exchange.first_at is not None else None
        ttft = None if first is None else first - exchange.began
        duration = ended - exchange.began
        if speed is None and completion:
            generating = ended - (first or exchange.began)
            speed = completion / generating if generating > 0 else None
        model = exchange.name
        record = {"id": self.next_id, "at": _iso(exchange.began_at), "model": model, "path": exchange.path,
                  "status": status, "cancelled": exchange.cancelled, "stream": streamed,
                  "ttft_ms": None if ttft is None else round(ttft * 1000, 1), "duration_ms": round(duration * 1000, 1),
                  "prompt_tokens": prompt, "completion_tokens": completion,
                  "tokens_per_second": None if speed is None else round(speed, 2)}
        self.next_id += 1
        self.ring.append(record)
        self._append(orjson.dumps(record) + b"\n")
        self._child(self.requests, model, str(status)).inc()
        if exchange.cancelled:
            self._child(self.cancelled, model).inc()
        if prompt:
            self._child(self.prompt_tokens, model).inc(prompt)
        if completion:
            self._child(self.completion_tokens, model).inc(completion)
        if ttft is not None:
            self._child(self.ttft, model).observe(ttft)
        self._child(self.duration, model).observe(duration)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once."""
        child = self.children.get((metric, labels))
        if child is None:
            child = self.children[metric, labels] = metric.labels(*labels)
        return child

    def _append(self, line: bytes) -> None:
        """One write per record to the open file; past `max_bytes` it becomes `activity.jsonl.1` (the one before
        goes) and a new file begins."""
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._size = os.fstat(self._fd).st_size
            if self._size and self._size + len(line) > self.max_bytes:
                os.close(self._fd)
                os.replace(self.path, self.rotated)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._size = 0
            self._size += os.write(self._fd, line)
        except OSError:
            self.close()  # a full or read-only disk costs the file, never the request; the next record tries again

    def recent(self, since: int = 0, limit: int | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """The kept records after id `since`, oldest first: the last `limit` of them, of one model if given."""
        found = [r for r in self.ring if r["id"] > since and (model is None or r["model"] == model)]
        return found[-limit:] if limit else found

    def metrics(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
