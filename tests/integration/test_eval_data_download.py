"""Benchmark downloads against a loopback HTTP server: cache, gated access, conversion, failures."""

import http.server
import io
import json
import threading

import pytest

from openrlhf_cfpo.evaluation import data
from openrlhf_cfpo.evaluation.data import DataError, DataFile


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}
    requests = []

    def do_GET(self):  # noqa: N802 (http.server API)
        type(self).requests.append((self.path, self.headers.get("Authorization")))
        if self.path == "/gated.csv" and self.headers.get("Authorization") != "Bearer secret":
            self.send_response(401)
            self.end_headers()
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRLHF_CFPO_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 5)
    _Handler.files, _Handler.requests = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_download_once_then_cached(server, tmp_path):
    base, handler = server
    handler.files["/items.jsonl"] = b'{"q": 1}\n'
    spec = DataFile("bench/items.jsonl", f"{base}/items.jsonl")
    first = data.locate(spec, None)
    second = data.locate(spec, None)
    assert first == second == tmp_path / "cache" / "bench" / "items.jsonl"
    assert data.read_jsonl(first) == [{"q": 1}]
    assert [path for path, _ in handler.requests] == ["/items.jsonl"]


def test_gated_file_needs_the_token_and_says_how_to_get_access(server, monkeypatch):
    base, handler = server
    handler.files["/gated.csv"] = b"Question\nwhy\n"
    spec = DataFile("gpqa/x.csv", f"{base}/gated.csv", access="accept the terms and export HF_TOKEN")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(DataError, match="is gated \\(HTTP 401\\): accept the terms and export HF_TOKEN"):
        data.locate(spec, None)
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert data.read_csv_records(data.locate(spec, None), required=("Question",)) == [{"Question": "why"}]


def test_missing_remote_file_and_unreachable_host_are_clear_errors(server):
    base, _ = server
    with pytest.raises(DataError, match="HTTP 404.*--data-dir DIR with DIR/bench/none.jsonl"):
        data.locate(DataFile("bench/none.jsonl", f"{base}/none.jsonl"), None)
    with pytest.raises(DataError, match="could not download http://127.0.0.1:9/x.*check the network"):
        data.locate(DataFile("bench/x.jsonl", "http://127.0.0.1:9/x.jsonl"), None)


def test_aime_parquet_is_converted_to_the_local_layout(server):
    import pandas

    from openrlhf_cfpo.evaluation import reasoning

    base, handler = server
    buffer = io.BytesIO()
    pandas.DataFrame({"ID": ["2024-I-1"], "Problem": ["Find x."], "Solution": ["..."], "Answer": [204]}).to_parquet(buffer)
    handler.files["/aime.parquet"] = buffer.getvalue()
    spec = DataFile("aime24/test.jsonl", f"{base}/aime.parquet", convert=reasoning.DATA["aime24"].convert)
    path = data.locate(spec, None)
    assert json.loads(path.read_text()) == {"id": "2024-I-1", "problem": "Find x.", "solution": "...", "answer": "204"}
    assert reasoning.LOADERS["aime24"](path) == [{"id": "2024-I-1", "question": "Find x.", "gold": "204"}]
