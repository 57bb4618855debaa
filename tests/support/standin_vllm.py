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
  STANDIN_REPLY_SECONDS  seconds a chat reply takes (default 0); a client that disconnects meanwhile is logged as
                         vLLM logs it (`Aborted request <id>.`) and recorded ({"aborted": id})
  STANDIN_STREAM_CHUNKS  chunks of a streamed chat reply (default 3), STANDIN_CHUNK_SECONDS apart (default 0)
  STANDIN_DIE_AFTER_CHUNKS  exit the whole process after sending this many chunks (a backend dying mid-stream)
Like vLLM, `--api-key KEY` (or $VLLM_API_KEY) makes every /v1 route answer 401 without `Authorization: Bearer KEY`
(/health stays open). Besides chat, /v1/rerank, /v1/responses, /v1/messages, /v1/images/* and
/v1/audio/transcriptions (multipart) answer {"object": "echo", "path", "model", ...}; any other route is vLLM's 404.
"""
from __future__ import annotations

import argparse
import email.parser
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
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
    serve.add_argument("--api-key", default=None)
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
    api_key = args.api_key or os.environ.get("VLLM_API_KEY")
    max_len = args.max_model_len or 131072

    echo_paths = ("/v1/rerank", "/v1/responses", "/v1/messages", "/v1/audio/transcriptions")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as vLLM's uvicorn serves them

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if api_key and self.path.startswith("/v1") and self.headers.get("Authorization") != f"Bearer {api_key}":
                self._send(401, {"error": "Unauthorized"})
                return False
            return True

        def _client_left(self) -> bool:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""

        def _generate(self, request_id: str, seconds: float) -> bool:
            """Take `seconds` to "generate"; False (logged like vLLM) when the client disconnects meanwhile."""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if self._client_left():
                    print(f"INFO: Aborted request {request_id}.", flush=True)
                    _record({"aborted": request_id})
                    return False
                time.sleep(0.01)
            return True

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {})
            elif self.path.startswith("/props"):  # llama-server's, reached through `?model=`: the query as it came
                self._send(200, {"path": self.path})
            elif self.path == "/ui":  # a web UI that lets any site read it and sets a cookie (what /upstream may meet)
                self.send_response(200)
                for name, value in (("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Credentials", "true"),
                                    ("Set-Cookie", "session=standin; Path=/"), ("Content-Length", "2")):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"ui")
            elif not self._authorized():
                return
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": served, "object": "model", "root": args.model, "max_model_len": max_len}]})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                message = email.parser.BytesParser().parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
                body = {part.get_param("name", header="content-disposition"):
                        part.get_filename() or part.get_payload(decode=True).decode() for part in message.get_payload()}
            else:
                body = json.loads(raw or b"{}")
            _record({"body": body, "path": self.path, "origin": self.headers.get("Origin"),
                     "referer": self.headers.get("Referer"),
                     "authorized": bool(api_key) and self.headers.get("Authorization") == f"Bearer {api_key}"})
            if not self._authorized():
                return
            if self.path in echo_paths or self.path.startswith("/v1/images/"):
                self._send(200, {"object": "echo", "path": self.path, "model": body.get("model"), "fields": body})
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"detail": "Not Found"})
                return
            if body.get("model") != served:
                self._send(404, {"object": "error", "message": f"The model `{body.get('model')}` does not exist."})
                return
            request_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            if body.get("stream"):
                self._stream(request_id)
                return
            if not self._generate(request_id, float(os.environ.get("STANDIN_REPLY_SECONDS", "0"))):
                return
            self._send(200, {"id": request_id, "object": "chat.completion", "model": served, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "standin reply"},
                 "finish_reason": "length"}]})

        def _stream(self, request_id: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            die_after = int(os.environ.get("STANDIN_DIE_AFTER_CHUNKS", "-1"))
            chunk_seconds = float(os.environ.get("STANDIN_CHUNK_SECONDS", "0"))
            events = [{"id": request_id, "object": "chat.completion.chunk", "model": served,
                       "choices": [{"index": 0, "delta": {"content": f"word{n} "}}]}
                      for n in range(int(os.environ.get("STANDIN_STREAM_CHUNKS", "3")))]
            try:
                for sent, event in enumerate(events):
                    if sent == die_after:
                        print("ERROR: engine core died", flush=True)
                        os._exit(1)
                    if not self._generate(request_id, chunk_seconds):
                        return
                    self._chunk(f"data: {json.dumps(event)}\n\n".encode())
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                print(f"INFO: Aborted request {request_id}.", flush=True)
                _record({"aborted": request_id})

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

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
