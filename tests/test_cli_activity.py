"""`modelreg activity`: the running proxy's last requests, as a table and as JSON, against the real llama-server."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import chat_body, free_port, wait_for
from support.gui_servers import REPO, start_proxy
from support.real_backends import clean_llama_env, llama_server_registry

pytestmark = pytest.mark.llama_server


def run_cli(config_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_activity_lists_the_last_requests_newest_first(tmp_path):
    folder = llama_server_registry(tmp_path, ["-c", "1024"])
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    try:
        assert run_cli(folder, "activity").stdout.startswith("no requests recorded yet")
        answers = [proxy.http.post("/v1/chat/completions", json=chat_body("tiny", tokens)).json()
                   for tokens in (3, 5, 7)]
        records = wait_for(lambda: json.loads(run_cli(folder, "activity", "--json").stdout), what="3 records")
        assert [r["completion_tokens"] for r in records] == [a["usage"]["completion_tokens"] for a in answers]
        table = run_cli(folder, "activity", "-n", "2", "--tsv")
        assert table.returncode == 0 and "from the running proxy's record" in table.stderr
        header, *rows = [line.split("\t") for line in table.stdout.splitlines()]
        assert header[:4] == ["time", "model", "path", "status"] and len(rows) == 2
        completion = header.index("completion tokens")
        assert [row[completion] for row in rows] == [str(r["completion_tokens"]) for r in records[:0:-1]]
        assert run_cli(folder, "activity", "--model", "other", "--json").stdout.strip() == "[]"
    finally:
        proxy.stop()
