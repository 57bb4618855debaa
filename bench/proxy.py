"""The proxy against the real llama-cpp-python server: per-request overhead and throughput side by side with the
backend direct, the proxy's own CPU per request and per streamed chunk, and reload latency.

`python -m bench.proxy load URL --models A B` runs only the load client (the end-to-end tests use it as the
"second process" that sends 200 requests 20 at a time) and prints its figures as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil

from bench.common import side_by_side
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, dumps
from support import chat_body


def load(url: str, models: list[str], total: int = 200, concurrency: int = 20, max_tokens: int = 1,
         through_proxy: bool = True) -> dict:
    """Send `total` chat requests, `concurrency` at a time, cycling through `models`; check each answer came
    from the model asked for (and, through the proxy, that its header says so). Returns the figures."""
    async def run() -> list[dict]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            async def one(index: int) -> dict:
                name = models[index % len(models)]
                async with gate:
                    began = time.perf_counter()
                    try:
                        reply = await client.post("/v1/chat/completions", json=chat_body(name, max_tokens))
                    except httpx.HTTPError as exc:
                        return {"model": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    seconds = time.perf_counter() - began
                body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
                routed = body.get("model") == name and (
                    not through_proxy or reply.headers.get("x-modelreg-model") == name)
                return {"model": name, "ok": reply.status_code == 200, "routed": routed, "id": body.get("id"),
                        "seconds": seconds, "error": None if reply.status_code == 200 else reply.text[:300]}
            return await asyncio.gather(*(one(i) for i in range(total)))

    began = time.perf_counter()
    results = asyncio.run(run())
    wall = time.perf_counter() - began
    done = [r for r in results if r["ok"]]
    latencies = sorted(r["seconds"] * 1000 for r in done)
    ids = [r["id"] for r in done]
    return {"total": total, "concurrency": concurrency, "ok": len(done), "failed": total - len(done),
            "misrouted": sum(1 for r in done if not r["routed"]), "duplicate_ids": len(ids) - len(set(ids)),
            "seconds": round(wall, 3), "requests_per_s": round(total / wall, 1),
            "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
            "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 2) if latencies else None,
            "errors": sorted({r["error"] for r in results if r["error"]})[:5]}


def _per_request_ms(client: httpx.Client, url: str, model: str, runs: int) -> float:
    """Median wall time of one non-streamed chat request, in ms."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        reply = client.post(url, json=chat_body(model))
        times.append((time.perf_counter() - began) * 1000)
        reply.raise_for_status()
    return statistics.median(times)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _proxy_cpu_ms(pid: int, action: Callable[[], int]) -> float:
    """The proxy process's CPU time per unit of `action` (which returns how many units it did), in ms: unlike wall
    time, it does not grow when other processes share the cores."""
    before = _cpu_seconds(pid)
    units = action()
    return (_cpu_seconds(pid) - before) * 1000 / units


def _stream_chunks(client: httpx.Client, url: str, model: str, max_tokens: int) -> int:
    with client.stream("POST", url, json=chat_body(model, max_tokens, stream=True)) as reply:
        return sum(1 for line in reply.iter_lines() if line.startswith("data: "))


def paired_load(proxied_url: str, direct_url: str, model: str, pids: dict[str, int],
                rounds: int = 3) -> tuple[dict, dict]:
    """200 requests at concurrency 20 straight to the backend, then through the proxy, `rounds` times in turns (so
    both see the same machine load); the round with the median requests/s of each, with the CPU milliseconds per
    request that each process in `pids` (and this one, the load client) spent in it: on 2 cores the three share,
    the proxy's part is what through-the-proxy loses."""
    def measured(url: str, through_proxy: bool) -> dict:
        processes = {label: psutil.Process(pid) for label, pid in {**pids, "client": os.getpid()}.items()}
        before = {label: _cpu_seconds(p.pid) for label, p in processes.items()}
        figures = load(url, [model], through_proxy=through_proxy)
        figures["cpu_ms_per_request"] = {label: round((_cpu_seconds(p.pid) - before[label]) * 1000 / 200, 2)
                                         for label, p in processes.items()}
        return figures

    direct, through = [], []
    for _ in range(rounds):
        direct.append(measured(direct_url, False))
        through.append(measured(proxied_url, True))

    def median(runs: list[dict]) -> dict:
        return sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
    return median(through), median(direct)


def llama_server_rows(folder: Path, notes: list[str]) -> list[tuple[str, float, str, float, str]]:
    """The real llama-server (`make backends`) with 4 and with 20 slots, `-c 4096`: more clients than slots, and
    as many."""
    from support import free_port
    from support.gui_servers import ProxyProcess
    from support.real_backends import LLAMA_SERVER, clean_llama_env
    from support.tiny_gguf import tiny_entry, write_tiny_gguf

    if not LLAMA_SERVER.exists():
        return []
    config_dir = folder / "llama-server-configs"
    config_dir.mkdir()
    model_file = write_tiny_gguf(folder / "tiny-llama-server.gguf")
    slots = {"np4": "4", "np20": "20"}
    (config_dir / CURATED_FILE).write_bytes(dumps([
        {**tiny_entry(model_file, name=name, extra_args=["-c", "4096", "-np", n]), "backend": "llama.cpp"}
        for name, n in slots.items()]))
    (config_dir / "settings.json").write_text(json.dumps({"log_dir": str(folder / "logs-llama-server"),
                                                          "stop_grace": 3,
                                                          "executables": {"llama.cpp": str(LLAMA_SERVER)}}))
    proxy = ProxyProcess(config_dir, free_port(), folder / "proxy-llama-server.log", env=clean_llama_env())
    rows = []
    try:
        for name, n in slots.items():
            proxy.http.post("/v1/chat/completions", json=chat_body(name)).raise_for_status()
            backend = proxy.backend(name)
            through, straight = paired_load(proxy.url, backend["base_url"], name,
                                            {"proxy": proxy.process.pid, "backend": backend["pid"]})
            notes.append(f"-np {n}: CPU ms per request through the proxy {through['cpu_ms_per_request']}, direct "
                         f"{straight['cpu_ms_per_request']}")
            rows.append((f"llama-server -c 4096 -np {n}: 200 requests at concurrency 20, requests/s (median of 3)",
                         through["requests_per_s"], "backend direct", straight["requests_per_s"], "1/s"))
    finally:
        proxy.stop()
    return rows


def main() -> None:
    from support import free_port
    from support.gui_servers import ProxyProcess
    from support.tiny_gguf import tiny_entry, write_tiny_gguf

    folder = Path(tempfile.mkdtemp(prefix="modelreg-bench-proxy-"))
    config_dir = folder / "configs"
    config_dir.mkdir()
    model_file = write_tiny_gguf(folder / "tiny.gguf")
    names = ["tiny-a", "tiny-b"]
    (config_dir / CURATED_FILE).write_bytes(dumps([tiny_entry(model_file, name=n) for n in names]))
    (config_dir / "settings.json").write_text(json.dumps({"log_dir": str(folder / "logs"), "stop_grace": 3}))
    proxy = ProxyProcess(config_dir, free_port(), folder / "proxy.log")
    try:
        for name in names:
            proxy.http.post("/v1/chat/completions", json=chat_body(name)).raise_for_status()
        backend = proxy.backend("tiny-a")
        direct_url, proxied_url = backend["base_url"], proxy.url

        # reload: a curated write (atomic, as `modelreg set` does it) until /admin/status serves its revision
        registry = Registry(config_dir)
        reload_ms = []
        for step in range(10):
            began = time.perf_counter()
            revision = registry.set_value("tiny-a", "generation_defaults.temperature", round(0.1 * step, 1)).revision
            while proxy.status()["revision"] != revision:
                time.sleep(0.002)
            reload_ms.append((time.perf_counter() - began) * 1000)

        # overhead: the same non-streamed request through the proxy and straight to the backend, interleaved
        direct, proxied = [], []
        with httpx.Client(timeout=60) as client:
            for _ in range(5):
                direct.append(_per_request_ms(client, direct_url + "/v1/chat/completions", "tiny-a", 40))
                proxied.append(_per_request_ms(client, proxied_url + "/v1/chat/completions", "tiny-a", 40))
            cpu_per_request = _proxy_cpu_ms(proxy.process.pid, lambda: sum(
                client.post(proxied_url + "/v1/chat/completions", json=chat_body("tiny-a")).status_code == 200
                for _ in range(200)))
            cpu_per_chunk = _proxy_cpu_ms(proxy.process.pid, lambda: sum(
                _stream_chunks(client, proxied_url + "/v1/chat/completions", "tiny-a", 100) for _ in range(5)))
        direct_ms, proxied_ms = statistics.median(direct), statistics.median(proxied)

        # throughput: 200 requests 20 at a time to one model, through the proxy and straight to its backend
        through, straight = paired_load(proxied_url, direct_url, "tiny-a",
                                        {"proxy": proxy.process.pid, "backend": backend["pid"]})
        notes = [f"llama-cpp-python: CPU ms per request through the proxy {through['cpu_ms_per_request']}, direct "
                 f"{straight['cpu_ms_per_request']}"]
        both = load(proxied_url, names)
        proxy.stop()  # its backends too: the llama-server rows get the cores to themselves
        side_by_side("proxy: tiny model on the real llama-cpp-python server and the real llama-server", [
            ("non-streamed chat request, concurrency 1 (median)", proxied_ms, "backend direct", direct_ms, "ms"),
            ("llama-cpp-python: 200 requests at concurrency 20, requests/s (median of 3)", through["requests_per_s"],
             "backend direct", straight["requests_per_s"], "1/s"),
            *llama_server_rows(folder, notes),
            ("200 requests at concurrency 20: p50", through["p50_ms"], "backend direct", straight["p50_ms"], "ms"),
            ("proxy CPU per non-streamed request", cpu_per_request, "goal", 2.0, "ms"),
            ("proxy CPU per streamed chunk", cpu_per_chunk, "goal (1,500 chunks/s per core)", 1000 / 1500, "ms"),
            ("reload: curated write -> new revision served (median of 10)", statistics.median(reload_ms),
             "goal", 300.0, "ms"),
        ], note=f"proxy overhead {proxied_ms - direct_ms:.2f} ms per request (goal < 2 ms); reload max "
                f"{max(reload_ms):.0f} ms; load over both models: {json.dumps(both)}\n" + "\n".join(notes))
    finally:
        proxy.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("load", help="only the load client; prints its figures as JSON")
    run.add_argument("url")
    run.add_argument("--models", nargs="+", required=True)
    run.add_argument("--total", type=int, default=200)
    run.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    if args.command == "load":
        print(json.dumps(load(args.url, args.models, args.total, args.concurrency)))
    else:
        main()


if __name__ == "__main__":
    _cli()
