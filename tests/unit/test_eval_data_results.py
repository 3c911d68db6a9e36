"""Benchmark file handling (local copies, corrupt files) and the results writer."""

import json

import pytest

from openrlhf_cfpo.evaluation import data
from openrlhf_cfpo.evaluation.data import DataError, DataFile
from openrlhf_cfpo.evaluation.results import (
    RESULTS_JSON,
    RESULTS_MD,
    RUN_CONFIG_JSON,
    read_results,
    record_results,
    write_run_config,
)

SPEC = DataFile("bench/items.jsonl", "https://example.invalid/items.jsonl")


def test_data_dir_copy_is_used_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download", lambda *a: pytest.fail("must not download with --data-dir"))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "items.jsonl").write_text('{"q": 1}\n\n{"q": 2}\n')
    path = data.locate(SPEC, tmp_path)
    assert data.read_jsonl(path, required=("q",)) == [{"q": 1}, {"q": 2}]


def test_missing_file_under_data_dir_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        data.locate(SPEC, tmp_path)
    message = str(err.value)
    assert str(tmp_path / "bench" / "items.jsonl") in message
    assert "https://example.invalid/items.jsonl" in message and "leave out --data-dir" in message


def test_cached_download_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRLHF_CFPO_DATA_CACHE", str(tmp_path))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "items.jsonl").write_text('{"q": 1}\n')
    monkeypatch.setattr(data, "download", lambda *a: pytest.fail("already cached"))
    assert data.locate(SPEC, None) == tmp_path / "bench" / "items.jsonl"


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"q": 1}\n{"q": 2\n', "line 2 is not valid JSON"),
        ('{"q": 1}\n{"r": 2}\n', "line 2 lacks field\\(s\\) q"),
        ('[1, 2]\n', "line 1 is not a JSON object"),
        ("\n\n", "holds no records"),
    ],
)
def test_corrupt_jsonl_is_reported_with_its_line(tmp_path, text, message):
    path = tmp_path / "items.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        data.read_jsonl(path, required=("q",))


def test_corrupt_file_in_the_cache_says_to_delete_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRLHF_CFPO_DATA_CACHE", str(tmp_path))
    path = tmp_path / "items.jsonl"
    path.write_text("not json\n")
    with pytest.raises(DataError, match=f"delete {path} to download it again"):
        data.read_jsonl(path)


def test_csv_rows_must_have_the_expected_width(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('q,a,b,c,d,A\n"broken",1\n')
    with pytest.raises(DataError, match="row 2 has 2 cells, expected 6"):
        data.read_csv_rows(path, columns=6)
    path.write_text("Question,Other\nwhat,x\n")
    with pytest.raises(DataError, match="lacks column\\(s\\) Correct Answer"):
        data.read_csv_records(path, required=("Question", "Correct Answer"))


def test_non_utf8_file_is_a_data_error(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"q": "\xff"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        data.read_jsonl(path)


def test_results_accumulate_per_benchmark_with_protocol(tmp_path):
    record_results(tmp_path, "ifeval", {"prompt_strict": 0.5, "inst_strict": 0.75}, "IFEval v1")
    record_results(tmp_path, "reasoning", {"math500": 0.25, "gpqa_diamond": None, "missing": ["gpqa_diamond"],
                                           "note": "gpqa not evaluated"}, "R v2")
    record_results(tmp_path, "ifeval", {"prompt_strict": 1.0, "inst_strict": 1.0}, "IFEval v1")
    results = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert list(results) == ["ifeval", "reasoning"]
    assert results["ifeval"] == {"prompt_strict": 1.0, "inst_strict": 1.0, "protocol": "IFEval v1"}
    assert results["reasoning"]["gpqa_diamond"] is None and results == read_results(tmp_path)
    summary = (tmp_path / RESULTS_MD).read_text()
    assert "| prompt_strict | 1.0000 |" in summary and "Note: gpqa not evaluated" in summary
    assert "Protocol: R v2" in (tmp_path / "reasoning" / RESULTS_MD).read_text()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_benchmark_own_report_is_kept(tmp_path):
    (tmp_path / "mt_bench").mkdir()
    (tmp_path / "mt_bench" / RESULTS_MD).write_text("own report\n")
    record_results(tmp_path, "mt_bench", {"score": 7.5}, "MT-Bench")
    assert (tmp_path / "mt_bench" / RESULTS_MD).read_text() == "own report\n"


def test_run_config_holds_config_versions_and_git_sha(tmp_path):
    write_run_config(tmp_path, {"model": "m", "limit": 3})
    info = json.loads((tmp_path / RUN_CONFIG_JSON).read_text())
    assert info["config"] == {"model": "m", "limit": 3}
    assert info["versions"]["lm-eval"] == "0.4.13" and info["versions"]["vllm"] is None
    assert info["git_sha"] is None or len(info["git_sha"]) == 40
