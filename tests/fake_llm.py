"""A local HTTP server that speaks the OpenAI chat-completions protocol, standing in for
vLLM in tests (the one stand-in the project allows). It answers by quoting the first
evidence chunk id it finds in the prompt, or a chosen reply. `fail_first=n` answers the
first n requests with HTTP 503, to exercise retries; `delay` holds each answer, and
`max_in_flight` records how many requests were ever open at once."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.rag import CITATION as CHUNK  # the chunk ids a real answer cites


class FakeLLM:
    def __init__(self, reply: str | None = None, fail_first: int = 0, delay: float = 0.0):
        self.reply = reply
        self.fail_first = fail_first
        self.delay = delay
        self.in_flight = self.max_in_flight = 0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "auth": self.headers.get("Authorization")})
                    failing = len(server.requests) <= server.fail_first
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(body, failing)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, body, failing):
                time.sleep(server.delay)
                if failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                prompt = body["messages"][-1]["content"]
                ids = CHUNK.findall(prompt)
                text = server.reply if server.reply is not None else (
                    f"The records describe this [{ids[0]}]." if ids else "No evidence.")
                payload = {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
