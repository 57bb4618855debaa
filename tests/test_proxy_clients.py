"""Real third-party clients (the official `openai` SDK, sync and async, and `litellm`) against `modelreg proxy` in
front of the real llama-cpp-python server with the tiny GGUF, the way Open WebUI in a container reaches it: bound to
a second address (127.0.0.2 stands in for the docker bridge) with proxy keys set."""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from modelreg.proxy.client import ProxyAdmin
from modelreg.store import CURATED_FILE, dumps
from support import free_port, wait_for
from support.gui_servers import ProxyProcess
from support.tiny_gguf import tiny_entry

pytestmark = pytest.mark.server
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm fetches a price list at import otherwise
BRIDGE = "127.0.0.2"
PROXY_KEYS = ["sk-webui-5b1e", "sk-scripts-77d0"]
BACKEND_KEY = "sk-backend-c0ffee4a91"
KEY_VARIABLE = "MODELREG_TEST_BACKEND_KEY"
QUESTION = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def proxy(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("proxy-clients")
    config_dir = folder / "configs"
    config_dir.mkdir()
    entries = [tiny_entry(tiny_model, name="tiny-chat", model_aliases=["org/tiny-chat"],
                          extra_args=["--n_ctx", "2048"]),
               tiny_entry(tiny_model, name="tiny-embed", extra_args=["--n_ctx", "512", "--embedding", "true"]),
               tiny_entry(tiny_model, name="tiny-keyed"),
               tiny_entry(tiny_model, name="tiny-foreign-key", extra_args=["--n_ctx", "512", "--api_key", "sk-x"])]
    entries[2]["backend_config"]["api_key_env"] = KEY_VARIABLE
    (config_dir / CURATED_FILE).write_bytes(dumps(entries))
    (config_dir / "settings.json").write_text(json.dumps({"log_dir": str(folder / "logs"), "stop_grace": 3,
                                                          "proxy_api_keys": PROXY_KEYS}))
    server = ProxyProcess(config_dir, free_port(), folder / "proxy.log", host=BRIDGE,
                          env={**os.environ, KEY_VARIABLE: BACKEND_KEY})
    server.folder = folder
    server.admin = ProxyAdmin(server.url, config_dir, timeout=30)
    try:
        yield server
    finally:
        server.stop()


def client(proxy, **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=PROXY_KEYS[0], **options)


def backend(proxy, name: str) -> dict:
    return next(b for b in proxy.admin.running() if b["name"] == name)


def test_bound_to_the_bridge_address_only(proxy):
    assert httpx.get(f"{proxy.url}/health").json()["ok"]  # open, without a key
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{proxy.port}/health")


def test_openai_sdk_lists_retrieves_chats_and_streams(proxy):
    sdk = client(proxy)
    assert {m.id for m in sdk.models.list()} == {"tiny-chat", "tiny-embed", "tiny-keyed", "tiny-foreign-key"}
    assert sdk.models.retrieve("org/tiny-chat").id == "tiny-chat"

    reply = sdk.chat.completions.create(model="org/tiny-chat", messages=QUESTION, max_tokens=4)
    assert reply.model == "tiny-chat" and reply.choices[0].message.content.strip()
    stream = sdk.chat.completions.create(model="tiny-chat", messages=QUESTION, max_tokens=6, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip() and text.isascii()


def test_openai_sdk_error_types(proxy):
    with pytest.raises(openai.NotFoundError) as missing:
        client(proxy).chat.completions.create(model="tiny-chatt", messages=QUESTION, max_tokens=2)
    assert missing.value.code == "model_not_found" and "tiny-chat" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client(proxy).models.retrieve("no-such-model")
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-wrong").models.list()
    assert refused.value.type == "authentication_error"
    with pytest.raises(openai.InternalServerError) as invalid:  # the backend's own answer, passed through:
        client(proxy).chat.completions.create(model="tiny-chat", messages=QUESTION, max_tokens=2,  # llama-cpp-
                                              extra_body={"max_tokens": "lots"})  # python says 500 to a bad field
    assert "validation error" in invalid.value.message


def test_async_sdk_streams_and_embeds(proxy):
    async def run() -> tuple[str, list[float]]:
        sdk = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PROXY_KEYS[1])
        stream = await sdk.chat.completions.create(model="tiny-chat", messages=QUESTION, max_tokens=4, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        embedding = await sdk.embeddings.create(model="tiny-embed", input="hello")
        await sdk.close()
        return text, embedding.data[0].embedding

    text, vector = asyncio.run(run())
    assert text.strip()
    assert len(vector[0] if isinstance(vector[0], list) else vector) == 64  # the tiny model's width


def test_litellm_chats_streams_embeds_and_maps_errors(proxy):
    import litellm

    common = {"api_base": proxy.url + "/v1", "api_key": PROXY_KEYS[0]}
    reply = litellm.completion(model="openai/tiny-chat", messages=QUESTION, max_tokens=4, **common)
    assert reply.choices[0].message.content.strip()
    chunks = litellm.completion(model="openai/tiny-chat", messages=QUESTION, max_tokens=4, stream=True, **common)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    embedding = litellm.embedding(model="openai/tiny-embed", input=["hello"], **common)
    assert embedding.data[0]["embedding"]
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(model="openai/tiny-chat", messages=QUESTION, max_tokens=2,
                           api_base=proxy.url + "/v1", api_key="sk-wrong")
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(model="openai/no-such-model", messages=QUESTION, max_tokens=2, **common)


def test_a_client_timeout_closes_the_upstream_request(proxy):
    proxy.admin.restart("tiny-chat")  # a fresh backend: no pooled connection to it yet
    port = backend(proxy, "tiny-chat")["port"]

    def upstream_connections() -> int:
        return sum(1 for c in psutil.Process(proxy.process.pid).net_connections(kind="tcp")
                   if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)

    impatient = client(proxy, timeout=0.5, max_retries=0)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="tiny-chat", messages=QUESTION, max_tokens=1500)
    left = time.monotonic()
    wait_for(lambda: backend(proxy, "tiny-chat")["in_flight"] == 0, what="in-flight count back to 0")
    wait_for(lambda: upstream_connections() == 0, what="the upstream connection closed")
    print(f"\nupstream closed {1000 * (time.monotonic() - left):.0f} ms after the client gave up (includes polling)")

    # a stream the client abandons: llama-cpp-python stops generating and says so in its log
    stream = client(proxy).chat.completions.create(model="tiny-chat", messages=QUESTION, max_tokens=1500,
                                                   stream=True)
    next(iter(stream))
    stream.close()
    wait_for(lambda: any("Disconnected from client" in line for line in proxy.admin.logs("tiny-chat")),
             what="llama-cpp-python to log the disconnect", timeout=60)
    wait_for(lambda: backend(proxy, "tiny-chat")["in_flight"] == 0, what="in-flight count back to 0")


def test_upstream_key_is_sent_and_never_written_nor_in_argv(proxy):
    reply = client(proxy).chat.completions.create(model="tiny-keyed", messages=QUESTION, max_tokens=2)
    assert reply.choices[0].message.content is not None
    keyed = backend(proxy, "tiny-keyed")
    # argv is any local user's to read (/proc/<pid>/cmdline, ps); the environment only the user's own
    assert not [a for a in keyed["argv"] if "api" in a.lower()]
    assert BACKEND_KEY.encode() not in Path(f"/proc/{keyed['pid']}/cmdline").read_bytes()
    assert f"API_KEY={BACKEND_KEY}".encode() in Path(f"/proc/{keyed['pid']}/environ").read_bytes().split(b"\0")
    direct = httpx.post(keyed["base_url"] + "/v1/chat/completions",
                        json={"model": "tiny-keyed", "messages": QUESTION, "max_tokens": 1})
    assert direct.status_code == 401  # the backend wants the key the proxy sends
    shown = json.dumps([proxy.status(), proxy.admin.running(), list(proxy.admin.logs("tiny-keyed"))])
    assert BACKEND_KEY not in shown
    for path in proxy.folder.rglob("*"):
        if path.is_file():
            assert BACKEND_KEY.encode() not in path.read_bytes(), path


def test_a_key_written_into_extra_args_is_refused_at_once_with_the_advice(proxy):
    """A backend key in extra_args would sit in the registry files, argv and exports: the proxy refuses to start the
    model (before any process starts) and says to use backend_config.api_key_env."""
    began = time.monotonic()
    reply = httpx.post(proxy.url + "/v1/chat/completions", headers={"x-api-key": PROXY_KEYS[1]}, timeout=120,
                       json={"model": "tiny-foreign-key", "messages": QUESTION, "max_tokens": 1})
    assert time.monotonic() - began < 60  # ready_timeout is 600 s
    assert reply.status_code == 503
    message = reply.json()["error"]["message"]
    assert "--api_key` may not be in extra_args" in message and "use backend_config.api_key_env" in message
    assert "tiny-foreign-key" not in [b["name"] for b in proxy.admin.running()]
