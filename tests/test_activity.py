"""Activity against the real llama-server: each request's tokens, speed and cancellation in the ring, the rotating
JSONL file and Prometheus' /metrics, and the GUI's Activity page reading them."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelreg.proxy.activity import ACTIVITY_FILE, Activity, token_counts
from modelreg.proxy.pool import BackendPool
from modelreg.registry import Registry
from support import chat_body, free_port, post_and_leave, wait_for
from support.apptest import open_app
from support.gui_servers import start_proxy
from support.proxy_server import set_settings
from support.real_backends import clean_llama_env, llama_server_registry

pytestmark = pytest.mark.llama_server
KEY = {"Authorization": "Bearer sk-activity"}
LIMIT = 25  # activity_limit
MAX_BYTES = 4096  # activity_max_bytes: a dozen records a file


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One proxy for the module, its tiny model served by the real llama-server (started by the first request)."""
    tmp = tmp_path_factory.mktemp("activity")
    folder = llama_server_registry(tmp, ["-c", "4096", "-np", "2"])
    set_settings(folder, proxy_api_keys=["sk-activity"], activity_limit=LIMIT, activity_max_bytes=MAX_BYTES)
    served = start_proxy(folder, free_port(), tmp, env=clean_llama_env())
    yield served
    served.stop()


def log_dir(proxy) -> Path:
    return proxy.config_dir.parent / "logs"


def samples(proxy) -> dict[tuple, float]:
    """Every sample /metrics serves, by (name, sorted labels)."""
    reply = proxy.http.get("/metrics", headers=KEY)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain"), reply.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def last_id(proxy) -> int:
    records = proxy.http.get("/api/activity", params={"limit": 1}, headers=KEY).json()["activity"]
    return records[-1]["id"] if records else 0


def records_after(proxy, since: int, count: int) -> list[dict]:
    """The records after id `since`, once there are `count` of them (a stream's is written as it ends)."""
    def found() -> list[dict]:
        records = proxy.http.get("/api/activity", params={"since": since}, headers=KEY).json()["activity"]
        return records if len(records) >= count else []
    return wait_for(found, timeout=30, what=f"{count} activity records after {since}")


def stream(proxy, **extra) -> list[dict]:
    """A streamed chat through the proxy: its data events, decoded."""
    events = []
    with proxy.http.stream("POST", "/v1/chat/completions", headers=KEY,
                           json=chat_body("tiny", 6, stream=True, temperature=0, **extra)) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def chat(proxy) -> dict:
    reply = proxy.http.post("/v1/chat/completions", headers=KEY, json=chat_body("tiny", 5, temperature=0))
    assert reply.status_code == 200, reply.text
    return reply.json()


def file_records(proxy) -> list[dict]:
    lines = []
    for name in (ACTIVITY_FILE + ".1", ACTIVITY_FILE):
        path = log_dir(proxy) / name
        lines += path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("answer,counts", [
    ({"usage": {"prompt_tokens": 30, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}},
     (30, 5, None)),
    ({"type": "message", "usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 1}}, (7, 3, None)),
    ({"timings": {"cache_n": 29, "prompt_n": 1, "predicted_n": 3, "predicted_per_second": 4184.1}}, (30, 3, 4184.1)),
    ({"choices": [{"message": {"content": '"usage": {"prompt_tokens": 999, "completion_tokens": 999}'}}]},
     (None, None, None)),  # the same text inside a string is escaped: not the backend's usage
    ({"object": "list", "data": [{"embedding": [0.5] * 300}], "usage": {"prompt_tokens": 2, "total_tokens": 2}},
     (2, None, None)),
    ('{"usage": {"prompt_tokens": -1, "completion_tokens": 1e400}}', (None, None, None)),  # no counts
])
def test_the_counts_are_read_from_the_answers_bytes(answer, counts):
    assert token_counts((answer if isinstance(answer, str) else json.dumps(answer)).encode()) == counts


def test_metrics_parse_and_count_the_requests_and_the_backends_tokens(proxy):
    for path in ("/metrics", "/api/activity"):  # the proxy's API keys, as llama-swap's paths take them
        assert proxy.http.get(path).status_code == 401, path
        assert proxy.http.get(path, headers={"Authorization": f"Bearer {proxy.token}"}).status_code == 200, path
    since, before = last_id(proxy), samples(proxy)
    answers = [chat(proxy) for _ in range(3)]
    usages = [a["usage"] for a in answers]
    for _ in range(2):
        usages.append(stream(proxy, stream_options={"include_usage": True})[-1]["usage"])
    assert not any(r["cancelled"] for r in records_after(proxy, since, 5))
    after = samples(proxy)
    assert delta(after, before, "modelreg_requests_total", model="tiny", status="200") == 5
    assert delta(after, before, "modelreg_prompt_tokens_total", model="tiny") == sum(u["prompt_tokens"]
                                                                                    for u in usages)
    assert delta(after, before, "modelreg_completion_tokens_total", model="tiny") == sum(u["completion_tokens"]
                                                                                        for u in usages) > 0
    assert delta(after, before, "modelreg_request_duration_seconds_count", model="tiny") == 5
    assert delta(after, before, "modelreg_time_to_first_token_seconds_count", model="tiny") == 2  # the streams
    assert after[("modelreg_backend_starts_total", (("model", "tiny"),))] == 1
    assert after[("modelreg_backends_running", (("model", "tiny"), ("state", "ready")))] == 1


def test_the_ring_and_the_file_hold_the_tokens_the_backend_reported(proxy):
    since = last_id(proxy)
    answer = chat(proxy)
    events = stream(proxy)  # no include_usage: llama-server's `timings` alone say what it did
    answered, streamed = records_after(proxy, since, 2)
    assert (answered["model"], answered["path"], answered["status"], answered["stream"]) == (
        "tiny", "/v1/chat/completions", 200, False)
    assert (answered["prompt_tokens"], answered["completion_tokens"]) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
    assert answered["tokens_per_second"] == round(answer["timings"]["predicted_per_second"], 2)
    assert answered["ttft_ms"] is None and answered["cancelled"] is False
    timings = events[-1]["timings"]
    assert streamed["stream"] is True and streamed["completion_tokens"] == timings["predicted_n"] > 0
    assert streamed["prompt_tokens"] == timings["prompt_n"] + timings["cache_n"]
    assert 0 < streamed["ttft_ms"] <= streamed["duration_ms"]
    written = {r["id"]: r for r in file_records(proxy)}
    assert written[answered["id"]] == answered and written[streamed["id"]] == streamed


def test_a_stream_the_client_leaves_is_recorded_as_cancelled(proxy):
    chat(proxy)  # the model is up, so the first chunk below is a token, not a loading note
    since = last_id(proxy)
    before = samples(proxy)
    body = chat_body("tiny", 3000, stream=True, ignore_eos=True)
    with proxy.http.stream("POST", "/v1/chat/completions", headers=KEY, json=body) as reply:
        assert reply.status_code == 200
        next(reply.iter_raw())  # the first tokens, then the client leaves
    [left] = records_after(proxy, since, 1)
    assert left["cancelled"] is True and left["completion_tokens"] is None  # it never got to its usage
    assert left["stream"] is True and left["ttft_ms"] is not None
    # a client that gives up before a long answer is ready
    post_and_leave(proxy.url + "/v1/chat/completions", {**body, "stream": False}, headers=KEY,
                   arrived=lambda: (b := proxy.backend("tiny")) and b["in_flight"] == 1)
    [gone] = records_after(proxy, left["id"], 1)
    assert (gone["status"], gone["cancelled"], gone["completion_tokens"]) == (499, True, None)
    assert delta(samples(proxy), before, "modelreg_requests_cancelled_total", model="tiny") == 2
    assert chat(proxy)["usage"]["completion_tokens"] > 0  # the backend is free again


def test_the_file_rotates_within_its_bound_and_the_ring_keeps_the_last(proxy):
    for _ in range(2 * MAX_BYTES // 300):
        chat(proxy)
    newest = last_id(proxy)
    current, previous = log_dir(proxy) / ACTIVITY_FILE, log_dir(proxy) / (ACTIVITY_FILE + ".1")
    assert 0 < current.stat().st_size <= MAX_BYTES and 0 < previous.stat().st_size <= MAX_BYTES
    kept = proxy.http.get("/api/activity", headers=KEY).json()["activity"]
    assert [r["id"] for r in kept] == list(range(newest - LIMIT + 1, newest + 1))
    assert [r["id"] for r in file_records(proxy)][-3:] == [newest - 2, newest - 1, newest]
    assert proxy.http.get("/api/activity", params={"since": "x"}, headers=KEY).status_code == 400
    # a proxy started again shows the activity it had: the ring is filled from the file
    again = Activity(log_dir(proxy), 5, MAX_BYTES, BackendPool(Registry(proxy.config_dir)))
    assert list(again.ring) == kept[-5:] and again.next_id == newest + 1


def test_the_activity_page_shows_the_requests_and_a_speed_plot(proxy, monkeypatch):
    monkeypatch.delenv("MODELREG_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(proxy.config_dir))
    monkeypatch.setenv("MODELREG_PROXY_URL", proxy.url)
    chat(proxy)
    records = proxy.http.get("/api/activity", headers=KEY).json()["activity"]
    at = open_app("activity_page.py")
    [table] = [t.value for t in at.dataframe]
    assert list(table["model"]) == ["tiny"] * len(records)
    assert list(table["completion tokens"]) == [r["completion_tokens"] for r in reversed(records)]
    assert {m.label: m.value for m in at.metric}["requests"] == str(len(records))
    [chart] = at.get("vega_lite_chart")  # tokens per second, a line per model
    plotted = pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
    spoken = [r for r in records if r["tokens_per_second"] is not None and not r["cancelled"]]
    assert list(plotted["tokens/s"]) == [r["tokens_per_second"] for r in spoken]
    assert set(plotted["model"]) == {"tiny"} and '"field": "model"' in chart.proto.spec
