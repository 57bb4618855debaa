"""A web page in the user's browser (Chromium) attacks the local proxy in front of a real llama-server."""
from __future__ import annotations

import functools
import http.server
import json
import threading

import httpx

from support import free_port
from support.gui_servers import CHROMIUM, browser_or_skip, start_proxy
from support.real_backends import clean_llama_env, llama_server_registry

ATTACK = """async ([url, body, json]) => {
  try {
    const init = {method: "POST", body};
    if (json) init.headers = {"Content-Type": "application/json"};
    const reply = await fetch(url, init);
    return "read " + reply.status + " " + (await reply.text()).slice(0, 200);
  } catch (error) {
    return "blocked " + error;
  }
}"""


def test_a_cross_origin_page_cannot_read_the_proxy_but_could_read_llama_server(tmp_path):
    sync_playwright = browser_or_skip()
    folder = llama_server_registry(tmp_path, ["-c", "512"])
    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>another site</title>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    chat = proxy.url + "/v1/chat/completions"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM))
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{evil.server_port}/")
            simple = page.evaluate(ATTACK, [chat, body, False])  # text/plain: no preflight
            preflighted = page.evaluate(ATTACK, [chat, body, True])
            assert simple.startswith("blocked") and preflighted.startswith("blocked"), (simple, preflighted)
            assert proxy.backend("tiny") is None  # nothing started either
            assert httpx.post(chat, content=body, headers={"Content-Type": "application/json"}, timeout=120
                              ).status_code == 200  # the user's own client starts it
            direct = page.evaluate(ATTACK, [proxy.backend("tiny")["base_url"] + "/v1/chat/completions", body, False])
            assert direct.startswith("read 200"), direct  # llama-server alone would let the page read it
            again = page.evaluate(ATTACK, [chat, body, False])
            assert again.startswith("blocked"), again
            browser.close()
    finally:
        proxy.stop()
        evil.shutdown()
