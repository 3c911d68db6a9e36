"""reporting.metrics (JSONL writer/reader), reporting.figures (metric grid with bands, line plot) and
reporting.intervals' curve band over seeds."""

import json
import logging
import math

import numpy as np
import pytest

from openrlhf_cfpo.reporting.figures import Curve, plot_lines, plot_metric_grid
from openrlhf_cfpo.reporting.metrics import MetricsWriter, read_metrics_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_writer_appends_one_flushed_line_per_record(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    with MetricsWriter(path) as writer:
        writer.write({"step": 1, "reward_mean": 0.5, "clip_ratio": np.float32(0.25)})
        # flushed: visible to a reader before the writer closes
        assert json.loads(path.read_text().splitlines()[0]) == {"step": 1, "reward_mean": 0.5, "clip_ratio": 0.25}
        writer.write({"step": 2, "ratio_max": float("nan")})
    with MetricsWriter(path) as writer:  # reopening appends
        writer.write({"step": 3})
    assert read_metrics_jsonl(path) == [
        {"step": 1, "reward_mean": 0.5, "clip_ratio": 0.25},
        {"step": 2, "ratio_max": None},
        {"step": 3},
    ]


def test_reader_skips_truncated_last_line_with_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "rew')
    with caplog.at_level(logging.WARNING, logger="openrlhf_cfpo.reporting.metrics"):
        assert read_metrics_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert "truncated last line 3" in caplog.text


def test_reader_rejects_corruption_before_the_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        read_metrics_jsonl(path)
    path.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_metrics_jsonl(path)


def _curves():
    steps = [0, 1, 2, 3]
    curves = []
    for objective in ("ppo", "cfpo"):
        for iterations in (1, 4):
            for metric in ("reward_mean", "clip_ratio"):
                curves.append(Curve(f"{objective}-it{iterations}", objective, f"iterations={iterations}", metric,
                                    steps, [0.1 * s * iterations for s in steps]))
    return curves


def test_metric_grid_lays_out_rows_by_metric_and_columns_by_panel(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    captured = {}
    original_close = plt.close

    def keep_figure(fig):
        captured["fig"] = fig
        original_close(fig)

    monkeypatch.setattr(plt, "close", keep_figure)
    path = tmp_path / "figures" / "dynamics.png"
    notes = plot_metric_grid(_curves(), ["reward_mean", "clip_ratio"], path, title="t")
    assert notes == []
    assert path.read_bytes().startswith(PNG_MAGIC)
    axes = np.array(captured["fig"].axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["iterations=1", "iterations=4"]  # first-seen panel order
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["reward_mean", "clip_ratio"]  # given metric order
    styles = {line.get_label(): line.get_linestyle() for line in axes[1][1].get_lines()}
    assert styles == {"ppo-it4": "--", "cfpo-it4": "-"}
    # one colour per objective across panels
    colours = {line.get_label(): line.get_color() for ax in axes.flat for line in ax.get_lines()}
    assert colours["cfpo-it1"] == colours["cfpo-it4"] != colours["ppo-it1"]


def test_metric_grid_notes_empty_cells_instead_of_failing(tmp_path):
    curves = [c for c in _curves() if not (c.panel == "iterations=4" and c.metric == "clip_ratio")]
    curves.append(Curve("nan-run", "ppo", "iterations=4", "clip_ratio", [0, 1], [math.nan, None]))
    notes = plot_metric_grid(curves, ["reward_mean", "clip_ratio", "entropy"], tmp_path / "g.png")
    assert len(notes) == 3  # clip_ratio in iterations=4 (only non-finite values) + entropy in both panels
    assert any("'clip_ratio'" in n and "'iterations=4'" in n for n in notes)
    assert sum("'entropy'" in n for n in notes) == 2


def test_metric_grid_and_lines_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least one curve"):
        plot_metric_grid([], ["reward_mean"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="2 steps but 1 values"):
        plot_metric_grid([Curve("x", "cfpo", "p", "m", [0, 1], [0.5])], ["m"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="has 2 values for 3 x values"):
        plot_lines([0, 1, 2], {"y": [1, 2]}, tmp_path / "b.png", xlabel="x", ylabel="y")
    assert not list(tmp_path.iterdir())


def test_plot_lines_writes_png(tmp_path):
    path = tmp_path / "lines.png"
    plot_lines([0.0, 0.5, 1.0], {"a": [0, 1, 2], "b": [2, 1, None]}, path, xlabel="r", ylabel="loss", title="t")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / ".lines.png.tmp").exists()


def test_seed_band_is_mean_and_range_at_the_steps_every_seed_has():
    from openrlhf_cfpo.reporting.intervals import seed_band

    steps, mean, low, high = seed_band([([1, 2, 3], [0.1, 0.4, None]), ([1, 2, 3], [0.3, 0.2, 0.5]),
                                        ([2, 3], [0.3, 0.6])])
    assert steps == [2]  # step 1 is missing from one seed, step 3 has no value in another
    assert (mean, low, high) == ([pytest.approx(0.3)], [0.2], [0.4])
    with pytest.raises(ValueError, match="at least one series"):
        seed_band([])


def test_metric_grid_shades_a_curves_band_in_its_colour(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgb

    captured = {}
    original_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (captured.setdefault("fig", fig), original_close(fig)))
    band = Curve("cfpo-it4", "cfpo", "iterations=4", "accuracy", [1, 2], [0.3, 0.4], low=[0.2, 0.35], high=[0.4, 0.5])
    plain = Curve("ppo-it4", "ppo", "iterations=4", "accuracy", [1, 2], [0.3, 0.2])
    plot_metric_grid([band, plain], ["accuracy"], tmp_path / "g.png")
    (ax,) = captured["fig"].axes
    (shaded,) = [c for c in ax.collections if isinstance(c, PolyCollection)]  # one band, for the curve with one
    line = next(l for l in ax.get_lines() if l.get_label() == "cfpo-it4")
    assert tuple(shaded.get_facecolor()[0][:3]) == pytest.approx(to_rgb(line.get_color()))
    with pytest.raises(ValueError, match="a band needs both low and high"):
        plot_metric_grid([Curve("x", "cfpo", "p", "m", [0, 1], [0.5, 0.6], low=[0.4, 0.5])], ["m"], tmp_path / "b.png")
    with pytest.raises(ValueError, match="and a band of 1/2"):
        plot_metric_grid([Curve("x", "cfpo", "p", "m", [0, 1], [0.5, 0.6], low=[0.4], high=[0.6, 0.7])], ["m"],
                         tmp_path / "b.png")
