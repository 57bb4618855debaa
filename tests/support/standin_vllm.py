"""A stand-in for `vllm serve` (vLLM needs a GPU): parses vLLM's command line, records it, speaks its HTTP endpoints.

Run as `python standin_vllm.py serve MODEL --host H --port P --served-model-name NAME [vLLM flags...]`.
Like vLLM, the port opens only after "loading" (connection refused meanwhile); `/health` then answers 200.
Environment knobs (tests set them; the supervisor passes its environment on):
  STANDIN_RECORD         file that receives one JSON line per start ({"argv", "pid"}) and per chat request ({"body"})
  STANDIN_LOAD_SECONDS   seconds to "load" before the port opens (default 0)
  STANDIN_FAIL_LOG       file whose text is printed to stderr before exiting with STANDIN_FAIL_CODE (default 1),
                         to replay a real vLLM failure log
  STANDIN_IGNORE_SIGTERM "1": ignore SIGTERM (a backend that only a SIGKILL stops)
  STANDIN_CHILD          "1": also start a child process in the same process group (like vLLM's engine core)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _record(event: dict) -> None:
    path = os.environ.get("STANDIN_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", nargs="+", default=None)
    serve.add_argument("--max-model-len", type=int, default=None)
    serve.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    args, _unknown = parser.parse_known_args(argv)  # real vLLM knows many more flags; they are only recorded
    return args


def main(argv: list[str]) -> int:
    args = _parse(argv)
    _record({"argv": [sys.argv[0], *argv], "pid": os.getpid(), "pgid": os.getpgid(0)})
    print("INFO vLLM API server version 0.0.0-standin", flush=True)
    print(f"INFO args: {vars(args)}", flush=True)
    if os.environ.get("STANDIN_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("STANDIN_CHILD") == "1":
        # an ignored SIGTERM is inherited across exec, so the child ignores it too when asked to
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    fail_log = os.environ.get("STANDIN_FAIL_LOG")
    if fail_log:
        with open(fail_log, encoding="utf-8") as handle:
            sys.stderr.write(handle.read())
        sys.stderr.flush()
        return int(os.environ.get("STANDIN_FAIL_CODE", "1"))
    time.sleep(float(os.environ.get("STANDIN_LOAD_SECONDS", "0")))

    served = (args.served_model_name or [args.model])[0]
    max_len = args.max_model_len or 131072

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": served, "object": "model", "root": args.model, "max_model_len": max_len}]})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            _record({"body": body, "path": self.path})
            if self.path != "/v1/chat/completions":
                self._send(404, {"detail": "Not Found"})
                return
            if body.get("model") != served:
                self._send(404, {"object": "error", "message": f"The model `{body.get('model')}` does not exist."})
                return
            self._send(200, {"id": "chatcmpl-standin", "object": "chat.completion", "model": served, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "standin reply"},
                 "finish_reason": "length"}]})

        def log_message(self, format: str, *fmt_args) -> None:
            print(f"INFO: {self.address_string()} - {format % fmt_args}", flush=True)

    server = ThreadingHTTPServer((args.host or "0.0.0.0", args.port), Handler)
    print(f"INFO: Uvicorn running on http://{args.host}:{args.port}", flush=True)
    if os.environ.get("STANDIN_IGNORE_SIGTERM") != "1":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
