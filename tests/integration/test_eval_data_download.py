"""Benchmark downloads against a loopback HTTP server: cache, gated access, conversion, failures, and
the `openrlhf-cfpo data fetch/verify` commands (offline, gated, intact/corrupt copies, sha256 pins)."""

import http.server
import io
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from openrlhf_cfpo.cli import data as data_cli
from openrlhf_cfpo.cli.main import main
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
    with pytest.raises(DataError, match="is gated and HF_TOKEN is not set: accept the terms and export HF_TOKEN"):
        data.locate(spec, None)
    assert handler.requests == []  # no token: nothing is sent
    monkeypatch.setenv("HF_TOKEN", "wrong")
    with pytest.raises(DataError, match="is gated \\(HTTP 401\\): accept the terms and export HF_TOKEN"):
        data.locate(spec, None)
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert data.read_csv_records(data.locate(spec, None), required=("Question",)) == [{"Question": "why"}]


def test_missing_remote_file_and_unreachable_host_are_clear_errors(server):
    base, _ = server
    with pytest.raises(DataError, match="HTTP 404.*--data-dir DIR with DIR/bench/none.jsonl"):
        data.locate(DataFile("bench/none.jsonl", f"{base}/none.jsonl"), None)
    with pytest.raises(DataError, match="could not reach http://127.0.0.1:9/x.*check the network"):
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



@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_files_inside_an_archive_are_extracted_with_one_download(server, kind):
    import tarfile
    import zipfile

    base, handler = server
    members = {"pack/dev/a_dev.csv": b"q,A,B,C,D,A\n", "pack/test/a_test.csv": b"r,A,B,C,D,B\n"}
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, body in members.items():
                archive.writestr(name, body)
    else:
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, body in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(body)
                archive.addfile(info, io.BytesIO(body))
    handler.files[f"/pack.{kind}"] = buffer.getvalue()
    url = f"{base}/pack.{kind}"
    for name, body in members.items():
        assert data.locate(DataFile(f"mmlu/{name}", url, member=name), None).read_bytes() == body
    assert [path for path, _ in handler.requests] == [f"/pack.{kind}"]
    with pytest.raises(DataError, match="holds no pack/val/a_val.csv"):
        data.locate(DataFile("mmlu/val.csv", url, member="pack/val/a_val.csv"), None)


def test_math_train_is_built_from_the_release_tarball(server):
    """MATH.tar -> math_train/train.jsonl: train problems only, by subject then numeric id, with unique_id."""
    import tarfile

    from openrlhf_cfpo.evaluation import reasoning

    base, handler = server
    problems = {
        "MATH/train/geometry/3.json": {"problem": "G3", "level": "Level 1", "type": "Geometry", "solution": "\\boxed{3}"},
        "MATH/train/algebra/10.json": {"problem": "A10", "level": "Level 2", "type": "Algebra", "solution": "\\boxed{10}"},
        "MATH/train/algebra/2.json": {"problem": "A2", "level": "Level 5", "type": "Algebra", "solution": "\\boxed{2}"},
        "MATH/test/algebra/1.json": {"problem": "T1", "level": "Level 1", "type": "Algebra", "solution": "\\boxed{1}"},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, record in problems.items():
            body = json.dumps(record).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    handler.files["/MATH.tar"] = buffer.getvalue()
    spec = DataFile("math_train/train.jsonl", f"{base}/MATH.tar", convert=reasoning.MATH_TRAIN.convert)
    rows = data.read_jsonl(data.locate(spec, None))
    assert [(row["problem"], row["unique_id"]) for row in rows] == [
        ("A2", "train/algebra/2.json"), ("A10", "train/algebra/10.json"), ("G3", "train/geometry/3.json")
    ]
    assert rows[0]["solution"] == "\\boxed{2}" and rows[0]["level"] == "Level 5"

ITEMS = b'{"q": 1}\n{"q": 2}\n'
CONFIG = b'[{"name": "x"}]'


@pytest.fixture
def served_units(server, monkeypatch):
    """One benchmark whose two files come from the loopback server: a sha256-pinned JSONL and a JSON."""
    base, handler = server
    handler.files.update({"/items.jsonl": ITEMS, "/config.json": CONFIG})
    units = {
        "bench": (
            DataFile("bench/items.jsonl", f"{base}/items.jsonl", sha256=hashlib.sha256(ITEMS).hexdigest()),
            DataFile("bench/config.json", f"{base}/config.json"),
        )
    }
    monkeypatch.setattr(data_cli, "all_units", lambda: units)
    return handler


def _cli(capsys, *argv):
    rc = main(["data", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fetch_downloads_then_skips_intact_copies_and_replaces_corrupt_ones(served_units, tmp_path, capsys):
    target = tmp_path / "data"
    rc, out, err = _cli(capsys, "fetch", "--to", str(target))
    assert rc == 0, err
    assert (target / "bench/items.jsonl").read_bytes() == ITEMS and (target / "bench/config.json").read_bytes() == CONFIG
    assert "fetched 2 file(s), 0 already intact" in out and f"export OPENRLHF_CFPO_DATA_DIR={target}" in out
    assert "[1/2]" in err and "[2/2]" in err  # progress

    rc, out, _ = _cli(capsys, "fetch", "--to", str(target))
    assert rc == 0 and "fetched 0 file(s), 2 already intact" in out
    assert len(served_units.requests) == 2  # nothing downloaded again

    (target / "bench/items.jsonl").write_bytes(b'{"q": 1}\n')  # parses, but is not the pinned file
    (target / "bench/config.json").write_text("[{")  # truncated
    rc, out, err = _cli(capsys, "fetch", "--to", str(target))
    assert rc == 0 and "fetched 2 file(s), 0 already intact" in out
    assert "replacing: bench/items.jsonl has sha256" in err and "replacing: bench/config.json does not parse" in err
    assert (target / "bench/items.jsonl").read_bytes() == ITEMS and (target / "bench/config.json").read_bytes() == CONFIG


def test_fetch_refuses_a_source_that_no_longer_matches_its_pin(served_units, tmp_path, capsys):
    served_units.files["/items.jsonl"] = b'{"q": 3}\n'
    rc, out, err = _cli(capsys, "fetch", "--to", str(tmp_path))
    assert rc == 1 and "1 failed" in out and "failed: bench/items.jsonl" in out
    assert "yields sha256" in err and "not the pinned" in err
    assert not (tmp_path / "bench/items.jsonl").exists() and (tmp_path / "bench/config.json").is_file()


def test_fetch_offline_is_one_line_naming_the_url(tmp_path):
    """The real manifest through a proxy on a closed loopback port: what a compute node without internet sees."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {**os.environ, "HTTPS_PROXY": closed, "https_proxy": closed, "NO_PROXY": "", "no_proxy": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "openrlhf_cfpo.cli", "data", "fetch", "--benchmarks", "mt_bench", "--to", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    url = data_cli.all_units()["mt_bench"][0].url
    assert len(errors) == 1 and errors[0].startswith(f"openrlhf-cfpo data fetch: error: could not reach {url} (")
    assert not any(tmp_path.rglob("*.jsonl"))


def test_fetch_gpqa_without_hf_token_names_the_access_page(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rc, out, err = _cli(capsys, "fetch", "--benchmarks", "gpqa_diamond", "--to", str(tmp_path))
    assert rc == 1 and "failed: gpqa_diamond/gpqa_diamond.csv" in out
    gated = [line for line in err.splitlines() if "gated" in line]
    assert len(gated) == 1 and "HF_TOKEN is not set" in gated[0]
    assert "https://huggingface.co/datasets/Idavidrein/gpqa" in gated[0].split("HF_TOKEN is not set")[1]


def test_fetch_with_ifeval_finds_nltk_punkt_in_the_target_folder(tmp_path, monkeypatch, capsys):
    spec = DataFile("ifeval/input_data.jsonl", "http://127.0.0.1:9/never")
    (tmp_path / "ifeval").mkdir()
    (tmp_path / "ifeval/input_data.jsonl").write_text('{"key": 1}\n')
    (tmp_path / "nltk_data/tokenizers/punkt_tab/english").mkdir(parents=True)
    monkeypatch.setattr(data_cli, "all_units", lambda: {"ifeval": (spec,)})
    rc, out, err = _cli(capsys, "fetch", "--to", str(tmp_path))
    assert rc == 0, err
    assert f"NLTK punkt_tab: already in {tmp_path / 'nltk_data'}" in out
    assert f"export NLTK_DATA={tmp_path / 'nltk_data'}" in out


def test_verify_reports_each_benchmark_and_fails_on_any_problem(served_units, tmp_path, capsys):
    folder = tmp_path / "data"
    assert _cli(capsys, "fetch", "--to", str(folder))[0] == 0
    rc, out, _ = _cli(capsys, "verify", str(folder))
    assert rc == 0 and out.splitlines() == ["bench: ok (2 file(s), 1 sha256-pinned, 1 parse-checked)"]

    (folder / "bench/items.jsonl").write_bytes(ITEMS.replace(b"2", b"3"))
    rc, out, _ = _cli(capsys, "verify", str(folder))
    assert rc == 1 and out.startswith("bench: FAILED: bench/items.jsonl has sha256")
    assert f"fix: openrlhf-cfpo data fetch --benchmarks bench --to {folder}" in out

    (folder / "bench/items.jsonl").unlink()
    rc, out, _ = _cli(capsys, "verify", str(folder))
    assert rc == 1 and "bench/items.jsonl missing" in out

    (folder / "bench/config.json").unlink()
    rc, _, err = _cli(capsys, "verify", str(folder))
    assert rc == 2 and "holds none of the benchmark files" in err
    rc, _, err = _cli(capsys, "verify", str(tmp_path / "nowhere"))
    assert rc == 2 and "is not a folder" in err


def test_verify_absent_benchmark_is_an_error_only_when_named(served_units, tmp_path, monkeypatch, capsys):
    units = {**data_cli.all_units(), "other": (DataFile("other/x.jsonl", "http://127.0.0.1:9/x"),)}
    monkeypatch.setattr(data_cli, "all_units", lambda: units)
    assert _cli(capsys, "fetch", "--benchmarks", "bench", "--to", str(tmp_path))[0] == 0
    rc, out, _ = _cli(capsys, "verify", str(tmp_path))
    assert rc == 0 and "other: absent (other/x.jsonl)" in out
    rc, out, _ = _cli(capsys, "verify", str(tmp_path), "--benchmarks", "bench,other")
    assert rc == 1 and "other: MISSING (other/x.jsonl)" in out


@pytest.mark.needs_data("mt_bench/question.jsonl", "ifeval/input_data.jsonl", "math_train/train.jsonl")
def test_verify_passes_on_the_full_data_folder(benchmark_data, capsys):
    rc, out, err = _cli(capsys, "verify", str(benchmark_data))
    assert rc == 0, out + err
    assert "mt_bench: ok (3 file(s), 3 sha256-pinned" in out
