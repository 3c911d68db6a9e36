"""Atomic writes and the run record shared by every command."""

import json
import re

import pytest

from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text, git_sha, package_versions, write_run_record


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_failed_write_keeps_the_previous_version(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_text(path, object())  # fails while writing
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_run_record(tmp_path):
    write_run_record(tmp_path / "run.json", {"lr": 1e-6})
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["config"] == {"lr": 1e-6}
    assert record["versions"]["torch"] == package_versions(["torch"])["torch"] is not None
    assert record["versions"]["vllm"] is None  # not installed here (the test stand-in has no metadata)
    sha = git_sha()
    assert record["git_sha"] == sha and (sha is None or re.fullmatch(r"[0-9a-f]{40}", sha))
    assert isinstance(record["command"], list)


def test_json_is_strict_json_with_nan_as_null_and_scalars_unwrapped(tmp_path):
    import numpy as np
    import torch

    atomic_write_json(tmp_path / "x.json", {"nan": float("nan"), "inf": [float("inf")], "t": torch.tensor(0.5),
                                            "n": np.float64(2.0), "arr": (1, 2)})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": [None], "t": 0.5, "n": 2.0, "arr": [1, 2]}


def test_atomic_output_keeps_nothing_from_a_failed_block(tmp_path):
    from openrlhf_cfpo.runinfo import atomic_output

    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "fig.png") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("plotting failed")
    assert list(tmp_path.iterdir()) == []
