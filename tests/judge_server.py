"""A scripted OpenAI-compatible judge server on 127.0.0.1 and an evaluation folder to judge,
shared by the engine and GUI tests of `evaluate judge`."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from engine.core import paths

ROWS = [("What is 2+2?", "5", "4"), ("Capital of France?", "Lyon", "Paris"), ("Colour of the sky?", "green", "blue"),
        ("Opposite of hot?", "warm", "cold")]


def make_evaluation(name: str = "judged") -> Path:
    """An evaluation folder as `evaluate run` writes it: base and one adapter ("tuned")."""
    folder = paths.evals_dir() / name
    folder.mkdir(parents=True)
    summary = {"id": name, "status": "finished", "dataset": "qa@v1", "split": "test", "examples": len(ROWS),
               "models": [{"label": "base", "adapter": ""}, {"label": "tuned", "adapter": "x"}], "metrics": {}}
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    rows = [{"index": i, "input": [{"role": "user", "content": q}], "reference": good,
             "outputs": {"base": bad, "tuned": good}, "metrics": {}} for i, (q, bad, good) in enumerate(ROWS)]
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


class Scripted:
    """A fake OpenAI-compatible server on 127.0.0.1; ``policy(first, second, prompt)`` gives the
    reply's content from the two answers in the order the prompt shows them."""

    def __init__(self, policy: Callable[[str, str, str], str], structured: bool = True) -> None:
        self.policy, self.structured, self.requests = policy, structured, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "fake-judge", "object": "model", "created": 0,
                                                             "owned_by": "test"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if "response_format" in body and not outer.structured:
                    self._send(400, {"error": {"message": "response_format is not supported", "type": "invalid"}})
                    return
                prompt = body["messages"][-1]["content"]
                found = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]\n(.*?)\n\n", prompt, re.DOTALL)
                single = re.search(r"\[Answer\]\n(.*?)\n\n", prompt, re.DOTALL)
                first, second = found.groups() if found else ((single.group(1), "") if single else ("", ""))
                content = outer.policy(first, second, prompt)
                self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()



def verdict(v: str) -> str:
    return json.dumps({"verdict": v, "reason": f"said {v}"})


GOOD = {good for _, _, good in ROWS}
