"""Ollama pulls through the daemon's API (the ollama client), then discovery from Ollama's store."""
from __future__ import annotations

import re
from collections.abc import Generator

from modelreg.discovery.ollama_store import DEFAULT_HOST, DEFAULT_NAMESPACE, model_name
from modelreg.download.progress import DownloadError, DownloadProgress
from modelreg.download.register import DownloadResult, register_ollama
from modelreg.errors import BadInput
from modelreg.registry import Registry

OLLAMA_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
OLLAMA_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,79}$")
OLLAMA_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(?::\d+)?$")


def check_ollama_name(name: str) -> str:
    """A name the daemon accepts (`[host/][namespace/]model[:tag]`), as Ollama lists it (`:latest` added)."""
    name = name or ""
    base, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    parts = base.split("/")
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        model = parts[0] if len(parts) == 1 else ""
    if not (OLLAMA_PART.match(model) and OLLAMA_PART.match(namespace) and OLLAMA_TAG.match(tag)
            and OLLAMA_HOST.match(host)):
        raise BadInput(f"{name!r} is not an Ollama model name: use NAME or NAME:TAG (e.g. llama3.2:1b), "
                       "optionally NAMESPACE/NAME:TAG")
    return model_name(host, namespace, model, tag)


def pull_ollama(registry: Registry, name: str, *, host: str | None = None,
                progress: DownloadProgress | None = None) -> DownloadResult:
    """Pull `name` through the Ollama daemon (settings.ollama_host), then discover it from the store and stub."""
    import httpx
    import ollama

    progress = progress or DownloadProgress()
    name = check_ollama_name(name)
    host = host or registry.settings.ollama_host
    client = ollama.Client(host=host)
    progress.update(phase="downloading", message=f"pulling {name} through {host}")
    layers: dict[str, tuple[int, int]] = {}
    last = None
    stream = client.pull(name, stream=True)
    try:
        for event in stream:
            progress.check_cancelled()
            last = event.status
            if event.digest and event.total:
                layers[event.digest] = (event.completed or 0, event.total)
                progress.update(bytes_done=sum(c for c, _ in layers.values()),
                                bytes_total=sum(t for _, t in layers.values()),
                                files_total=len(layers), files_done=sum(c >= t for c, t in layers.values()),
                                message=event.status)
            else:
                progress.update(message=event.status or "")
    except ollama.ResponseError as exc:
        text = str(exc.error)
        if "file does not exist" in text or "not found" in text:
            raise BadInput(f"Ollama has no model {name!r} ({text}): check the name and tag at "
                           "https://ollama.com/library") from exc
        raise DownloadError(f"Ollama could not pull {name}: {text}") from exc
    except (ConnectionError, httpx.ConnectError) as exc:  # the client raises httpx's error when streaming
        raise DownloadError(f"no Ollama daemon answers at {host}: start it with `ollama serve` or set "
                            "`ollama_host` in settings") from exc
    except httpx.HTTPError as exc:
        raise DownloadError(f"the pull of {name} from {host} broke off ({exc}); run it again to resume "
                            "(Ollama keeps the finished layers)") from exc
    finally:
        if isinstance(stream, Generator):  # what the client returns: ending it closes the HTTP stream
            stream.close()
    if last != "success":
        raise DownloadError(f"the pull of {name} from {host} ended without success (last status: {last!r}); "
                            "run it again to resume")
    result = DownloadResult("ollama", name, "", [], [], {})
    progress.update(phase="registering", message=f"discovering {name} from the Ollama store")
    register_ollama(registry, name, result)
    progress.update(phase="done", message=f"{name} pulled")
    return result


