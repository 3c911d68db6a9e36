"""Training logs → per-run metric series in the lab's lower-snake names.

Four sources, any mix, found under each ``--runs`` folder:

- OpenRLHF and verl tensorboard logs (OpenRLHF's ``--logger.tensorboard_dir``, one sub-folder per
  ``run_name``; verl's ``TENSORBOARD_DIR``, one folder per run), read record by record with
  tensorboard's own event-file loader;
- verl's file logger (``trainer.logger=[file]``): ``<experiment_name>.jsonl``, one
  ``{"step": s, "data": {tag: value}}`` per step;
- wandb offline run folders (``offline-run-*`` holding ``run-<id>.wandb``), read with wandb's own
  record protobufs; unreadable ones are skipped with a note;
- the lab's ``metrics.jsonl`` (one object per step, several runs per file). A lab sweep's folder
  holds every finished cell's lines in its own metrics.jsonl and again under ``cells/``; only the
  former is read, so each cell counts once. Its seeds are separate runs that share a ``group``.

OpenRLHF 0.11.2 logs ``train/<key>`` (the actor's ``fit`` status plus ``rollout/*`` statistics) at
each global step and ``eval/<key>`` after each evaluation; verl 0.9.1 logs ``actor/*``, ``critic/*``, ``response_length/*``
per step and ``val-core/<data_source>/<reward|acc>/mean@<n>`` after each validation.
``OPENRLHF_METRICS`` and ``VERL_METRICS`` map those tags to the lab's names; docs/reports.md prints
both. A verl run's settings come from the Hydra overrides
examples/verl/train_rlvr_math.sh saves beside its event files (``VERL_OVERRIDES_FILE``).

Problems in one run (empty log, truncated event file, a metric the run never logged) become notes
and never stop the other runs from being read.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from openrlhf_cfpo.reporting.run_settings import RunSettings, settings_from_openrlhf_args, settings_from_verl_overrides
from openrlhf_cfpo.reporting.metrics import LAB_TAG_PREFIX

Series = Tuple[List[int], List[float]]  # (steps, values), steps ascending and unique


@dataclass(frozen=True)
class MetricSource:
    """A lab metric and the OpenRLHF 0.11.2 tags it is read from (first present tag wins)."""

    name: str
    tags: Tuple[str, ...]
    meaning: str
    missing_hint: str = ""


# eval/eval_<datasource>_pass1: OpenRLHF's validation reward (mean reward of the eval samples);
# val-core/<datasource>/<reward|acc>/mean@<n>: verl's.
EVAL_PASS1_TAG = re.compile(r"^eval/eval_(?P<datasource>.+)_pass1$|^val-core/(?P<verl_datasource>[^/]+)/(reward|acc)/mean@\d+$")

OPENRLHF_METRICS: Tuple[MetricSource, ...] = (
    MetricSource(
        "reward_mean",
        ("train/rollout/reward_mean", "train/reward"),
        "training reward: mean reward of the step's rollout samples",
    ),
    MetricSource(
        "accuracy",
        ("eval/eval_<datasource>_pass1",),
        "validation reward: eval pass@1 (mean over datasources when there are several)",
        "OpenRLHF evaluates only with --eval.dataset and logs every --eval.steps",
    ),
    MetricSource(
        "clip_ratio",
        ("train/ppo_clip_ratio",),
        "fraction of action tokens outside the trust region in the direction of their advantage",
    ),
    MetricSource(
        "policy_kl",
        ("train/ppo_kl",),
        "KL between the rollout (old) policy and the updated policy",
    ),
    MetricSource(
        "entropy",
        ("train/entropy_loss",),
        "mean token entropy of the policy on its own samples",
        "OpenRLHF logs entropy only with --actor.entropy_coef set (0 logs it without training on it)",
    ),
    MetricSource(
        "response_length_mean",
        ("train/rollout/response_length_mean", "train/response_length"),
        "mean generated length in tokens",
    ),
    MetricSource("grad_norm", ("train/actor_grad_norm",), "actor gradient norm at the last optimizer step"),
)
# verl 0.9.1's tags for the same metrics (trainer/ppo/metric_utils.py, workers/utils/losses.py,
# the trainer's validation); tests/verl/test_verl_reports.py checks them against verl's source.
VERL_METRICS: Tuple[MetricSource, ...] = (
    MetricSource("reward_mean", ("critic/rewards/mean",), "training reward: mean reward of the step's rollout samples"),
    MetricSource(
        "accuracy",
        ("val-core/<datasource>/reward/mean@<n>",),
        "validation reward: mean reward of the validation samples (mean over datasources when there are several)",
        "verl validates only with data.val_files and logs every trainer.test_freq steps",
    ),
    MetricSource(
        "clip_ratio",
        ("actor/pg_clipfrac",),
        "fraction of action tokens outside the trust region in the direction of their advantage",
    ),
    MetricSource("policy_kl", ("actor/ppo_kl",), "KL between the rollout (old) policy and the updated policy"),
    MetricSource("entropy", ("actor/entropy",), "mean token entropy of the policy on its own samples"),
    MetricSource("response_length_mean", ("response_length/mean",), "mean generated length in tokens"),
    MetricSource("grad_norm", ("actor/grad_norm",), "actor gradient norm at the last optimizer step"),
)
METRIC_NAMES: Tuple[str, ...] = tuple(source.name for source in OPENRLHF_METRICS)
_SOURCES_BY_NAME = {
    "openrlhf": {source.name: source for source in OPENRLHF_METRICS},
    "verl": {source.name: source for source in VERL_METRICS},
}
_VERL_TAGS = {tag for source in VERL_METRICS for tag in source.tags}

EVENT_FILE_MARKER = "tfevents"
WANDB_RUN_FILE = re.compile(r"^run-.+\.wandb$")
LAB_METRICS_FILE = "metrics.jsonl"
LAB_CELLS_DIR = "cells"  # a lab sweep's per-cell copies of the lines in its metrics.jsonl
LAB_RUN_KEYS = ("objective", "iterations", "batch_ratio", "kl_coef", "seed")  # kl_coef: rlhf setting only
# The Hydra overrides of a verl run (a JSON list), saved by examples/verl/train_rlvr_math.sh in its
# TENSORBOARD_DIR before verl starts: the run's settings (verl saves none of its own).
VERL_OVERRIDES_FILE = "verl_overrides.json"


@dataclass
class TrainingRun:
    """One training run: its label, where it came from, its settings and metric series."""

    label: str
    source: str
    kind: str  # "openrlhf" (tensorboard and/or wandb logs), "verl" (tensorboard or JSONL) or "lab" (metrics.jsonl)
    settings: RunSettings = field(default_factory=RunSettings)
    series: Dict[str, Series] = field(default_factory=dict)
    seed: Optional[int] = None
    group: str = ""  # runs that differ only in their seed share it (figures draw them as one mean curve)

    def __post_init__(self):
        self.group = self.group or self.label


def missing_metric_note(run: TrainingRun, name: str) -> str:
    """The note for a run that never logged ``name``; for OpenRLHF and verl runs, the tags looked for
    and the setting that would log it."""
    if run.kind == "lab":
        return f"run {run.label}: no {name} in {run.source}"
    source = _SOURCES_BY_NAME[run.kind][name]
    hint = f" ({source.missing_hint})" if source.missing_hint else ""
    return f"run {run.label}: no {name} logged (looked for {', '.join(source.tags)}){hint}"


def _sorted_series(points: Dict[int, float]) -> Series:
    steps = sorted(points)
    return steps, [points[step] for step in steps]


def framework_of(scalars: Dict[str, Dict[int, float]]) -> str:
    """"verl" when the log holds a tag of ``VERL_METRICS``, else "openrlhf"."""
    return "verl" if _VERL_TAGS & set(scalars) or any(tag.startswith("val-core/") for tag in scalars) else "openrlhf"


def map_openrlhf_scalars(scalars: Dict[str, Dict[int, float]]) -> Dict[str, Series]:
    """OpenRLHF or verl tags → lab metric series, through ``OPENRLHF_METRICS`` then ``VERL_METRICS``."""
    mapped: Dict[str, Series] = {}
    for source in OPENRLHF_METRICS + VERL_METRICS:
        if source.name in mapped:
            continue
        if source.name == "accuracy":
            per_datasource = [points for tag, points in scalars.items() if EVAL_PASS1_TAG.match(tag)]
            if per_datasource:
                shared_steps = set.intersection(*(set(points) for points in per_datasource))
                mean = {s: sum(p[s] for p in per_datasource) / len(per_datasource) for s in shared_steps}
                if mean:
                    mapped[source.name] = _sorted_series(mean)
            continue
        for tag in source.tags:
            if scalars.get(tag):
                mapped[source.name] = _sorted_series(scalars[tag])
                break
    return mapped


# --- tensorboard -------------------------------------------------------------------------------


def _tfrecord_size(payload: bytes) -> int:
    """Bytes a TFRecord takes on disk: length (8), its crc (4), payload, payload crc (4)."""
    return len(payload) + 16


def read_tensorboard_scalars(run_dir: str, notes: List[str]) -> Dict[str, Dict[int, float]]:
    """All scalars in ``run_dir``'s event files as ``{tag: {step: value}}`` (later files and
    records win for a repeated step). A truncated or corrupt file keeps what precedes the damage
    and adds a note."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    scalars: Dict[str, Dict[int, float]] = {}
    event_files = sorted(name for name in os.listdir(run_dir) if EVENT_FILE_MARKER in name)
    for name in event_files:
        path = os.path.join(run_dir, name)
        consumed = records = 0
        for payload in RawEventFileLoader(path).Load():
            consumed += _tfrecord_size(payload)
            records += 1
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = float(value.simple_value)
                elif value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tensor_util.make_ndarray(value.tensor))
                else:
                    continue
                scalars.setdefault(value.tag, {})[int(event.step)] = number
        size = os.path.getsize(path)
        if consumed != size:
            notes.append(
                f"{path}: truncated or corrupt event file; read {records} records "
                f"({consumed} of {size} bytes) and ignored the rest"
            )
    return scalars


# --- wandb offline runs ------------------------------------------------------------------------

_WANDB_MAGIC = b":W&B"
_WANDB_FILE_HEADER = 7  # ":W&B", magic 0xBEE1 (little endian), version byte
_WANDB_BLOCK = 32768  # leveldb-log framing: records never straddle a block header
_WANDB_RECORD_HEADER = 7  # crc32 (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """A .wandb file that is not a readable wandb datastore."""


def _wandb_records(path: str) -> Iterable[bytes]:
    """Payloads of a wandb datastore file (leveldb-log framing, as wandb's own reader)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(_WANDB_MAGIC):
        raise WandbFileError("not a wandb datastore (bad header)")
    position, pending = _WANDB_FILE_HEADER, b""
    while position + _WANDB_RECORD_HEADER <= len(data):
        left_in_block = _WANDB_BLOCK - position % _WANDB_BLOCK
        if left_in_block < _WANDB_RECORD_HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _WANDB_RECORD_HEADER])
        start = position + _WANDB_RECORD_HEADER
        if kind == 0 and length == 0:  # zero padding to the end of a block
            position += left_in_block
            continue
        if start + length > len(data) or kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            raise WandbFileError(f"damaged record at byte {position}")
        chunk, position = data[start : start + length], start + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        else:
            yield pending + chunk
            pending = b""


def _wandb_key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class WandbRun:
    name: str
    config: Dict[str, object]
    scalars: Dict[str, Dict[int, float]]


def read_wandb_run(path: str) -> WandbRun:
    """Display name, config and numeric history of one ``run-<id>.wandb`` file.

    The step of a history row is OpenRLHF's ``train/global_step`` or ``eval/global_step`` when
    present (its logger sends them), else wandb's ``_step``. Raises WandbFileError or ImportError.
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    name, config, scalars = "", {}, {}
    try:
        for payload in _wandb_records(path):
            record = wandb_internal_pb2.Record.FromString(payload)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name = record.run.display_name
                updates = record.run.config.update
            elif kind == "config":
                updates = record.config.update
            elif kind == "history":
                row = {_wandb_key(item): json.loads(item.value_json) for item in record.history.item}
                step = row.get("train/global_step", row.get("eval/global_step", row.get("_step")))
                for key, value in row.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and step is not None:
                        scalars.setdefault(key, {})[int(step)] = float(value)
                continue
            else:
                continue
            for item in updates:
                config[_wandb_key(item)] = json.loads(item.value_json)
    except (DecodeError, json.JSONDecodeError) as err:
        raise WandbFileError(f"undecodable record ({err})") from None
    return WandbRun(name=name, config=config, scalars=scalars)


# --- the lab's metrics.jsonl -------------------------------------------------------------------


def _lab_cell_suffix(key: Tuple, varying: Sequence[str], with_seed: bool = True) -> str:
    objective, iterations, batch_ratio, kl_coef, seed = key
    parts = [f"{objective}_it{iterations}"]
    if "batch_ratio" in varying:
        parts.append(f"br{batch_ratio:g}")
    if "kl_coef" in varying:
        parts.append(f"kl{kl_coef:g}")
    if "seed" in varying and with_seed:
        parts.append(f"seed{seed}")
    return "_".join(parts)


def read_lab_runs(path: str, folder_label: str, notes: List[str]) -> List[TrainingRun]:
    """One TrainingRun per (objective, iterations, batch_ratio, kl_coef, seed) cell of a lab metrics.jsonl
    (kl_coef: the rlhf setting's β), labelled by the folder name, or ``<folder>/<objective>_it<iterations>``
    (+ batch ratio, β, seed where those vary) when the file holds several cells; the group label leaves
    out the seed."""
    from openrlhf_cfpo.reporting.metrics import read_metrics_jsonl

    try:
        rows = read_metrics_jsonl(path)
    except (OSError, ValueError) as err:
        notes.append(f"{path}: skipped, unreadable lab metrics ({err})")
        return []
    cells: Dict[Tuple, List[dict]] = {}
    for row in (r for r in rows if r.get("step") is not None):
        cells.setdefault(tuple(row.get(key) for key in LAB_RUN_KEYS), []).append(row)
    varying = [k for i, k in enumerate(LAB_RUN_KEYS) if len({cell[i] for cell in cells}) > 1]
    runs = []
    for key, cell_rows in cells.items():
        objective, iterations, batch_ratio, kl_coef, seed = key
        series = {}
        for name in METRIC_NAMES:
            points = {int(r["step"]): float(r[name]) for r in cell_rows if r.get(name) is not None}
            if points:
                series[name] = _sorted_series(points)
        runs.append(
            TrainingRun(
                label=f"{folder_label}/{_lab_cell_suffix(key, varying)}" if len(cells) > 1 else folder_label,
                source=path,
                kind="lab",
                settings=RunSettings(objective=objective, iterations=iterations, batch_ratio=batch_ratio,
                                     kl_beta=kl_coef),
                series=series,
                seed=seed,
                group=f"{folder_label}/{_lab_cell_suffix(key, varying, with_seed=False)}"
                if len(cells) > 1 else folder_label,
            )
        )
    if not runs:
        notes.append(f"{path}: no metric rows (empty lab log)")
    return runs


# --- saved OpenRLHF arguments ------------------------------------------------------------------


def _flatten(mapping: Dict[str, object], prefix: str = "") -> Dict[str, object]:
    flat: Dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _namespace_repr_to_dict(text: str) -> Optional[Dict[str, object]]:
    """``"namespace(a=1, b=namespace(c='x'))"`` → ``{"a": 1, "b": {"c": "x"}}``; None if not one.

    OpenRLHF 0.11.2 hands wandb ``args.__dict__`` whose groups are SimpleNamespaces; wandb stores
    each group as its repr. Only literal values are kept (parsed with ast, never evaluated)."""
    import ast

    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None

    def convert(node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "namespace":
            return {kw.arg: convert(kw.value) for kw in node.keywords if kw.arg}
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None

    converted = convert(tree)
    return converted if isinstance(converted, dict) else None


def openrlhf_args_from_wandb_config(config: Dict[str, object]) -> Dict[str, object]:
    """wandb's run config (as OpenRLHF 0.11.2 writes it) → flat dotted OpenRLHF arguments."""
    nested: Dict[str, object] = {}
    for key, value in config.items():
        if key.startswith("_"):
            continue
        if isinstance(value, str) and value.startswith("namespace("):
            value = _namespace_repr_to_dict(value)
        nested[key] = value
    return _flatten(nested)


def saved_args_in_folder(folder: str) -> Optional[Dict[str, object]]:
    """OpenRLHF arguments saved as JSON in ``folder``: flat dotted keys as ``openrlhf-cfpo train
    --dry-run`` prints them, nested groups, or either under ``"config"`` (the run record
    ``openrlhf-cfpo train`` writes); the first ``*.json`` that holds ``actor.policy_loss_type``
    wins. OpenRLHF itself saves its arguments only in wandb's config."""
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                content = json.load(handle)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(content, dict):
            flat = _flatten(content.get("config", content))
            if "actor.policy_loss_type" in flat:
                return flat
    return None


def saved_verl_overrides(folder: str) -> Optional[List[str]]:
    """The verl run's Hydra overrides saved in ``folder`` (``VERL_OVERRIDES_FILE``), None without one."""
    try:
        with open(os.path.join(folder, VERL_OVERRIDES_FILE), encoding="utf-8") as handle:
            overrides = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    return [str(item) for item in overrides] if isinstance(overrides, list) else None


# --- verl's file logger ------------------------------------------------------------------------


def read_verl_jsonl(path: str) -> Optional[Dict[str, Dict[int, float]]]:
    """Scalars of a verl file-logger JSONL as ``{tag: {step: value}}``; None when the file is not one
    (its first line is not ``{"step": int, "data": {...}}``). A damaged line ends the read."""
    scalars: Dict[str, Dict[int, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            try:
                row = json.loads(line)
                step, data = int(row["step"]), row["data"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if number == 0:
                    return None
                break
            if not isinstance(data, dict):
                return None if number == 0 else scalars
            for tag, value in data.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    scalars.setdefault(tag, {})[step] = float(value)
    return scalars


def _verl_jsonl_run(path: str, notes: List[str]) -> Optional[TrainingRun]:
    try:
        scalars = read_verl_jsonl(path)
    except (OSError, UnicodeDecodeError) as err:
        notes.append(f"{path}: skipped, unreadable ({err})")
        return None
    if scalars is None:
        return None
    series = map_openrlhf_scalars(scalars)
    if not series:
        notes.append(f"{path}: no verl training metrics in it (empty log)")
        return None
    label = os.path.splitext(os.path.basename(path))[0]
    overrides = saved_verl_overrides(os.path.dirname(path))
    settings = settings_from_verl_overrides(overrides) if overrides is not None else RunSettings()
    return TrainingRun(label=label, source=path, kind="verl", settings=settings, series=series)


# --- discovery ---------------------------------------------------------------------------------


def _tensorboard_run(run_dir: str, label: str, notes: List[str]) -> Optional[TrainingRun]:
    try:
        scalars = read_tensorboard_scalars(run_dir, notes)
    except ImportError:
        notes.append(f"{run_dir}: skipped, reading tensorboard logs needs `pip install tensorboard`")
        return None
    except OSError as err:
        notes.append(f"{run_dir}: skipped, event files not readable ({err})")
        return None
    if scalars and all(tag.startswith(LAB_TAG_PREFIX) for tag in scalars):
        return None  # a lab cell's own event files: its metrics.jsonl beside them is the run
    series = map_openrlhf_scalars(scalars)
    if not series:
        notes.append(
            f"{run_dir}: no OpenRLHF training metrics in its event files (empty log: did the run "
            "reach its first --logger.logging_steps?)"
        )
        return None
    args = saved_args_in_folder(run_dir)
    settings = settings_from_openrlhf_args(args) if args else RunSettings()
    overrides = saved_verl_overrides(run_dir)
    if overrides is not None:
        settings = settings_from_verl_overrides(overrides)
    return TrainingRun(label=label, source=run_dir, kind=framework_of(scalars), settings=settings, series=series)


def _wandb_run(run_dir: str, wandb_file: str, notes: List[str]) -> Optional[TrainingRun]:
    path = os.path.join(run_dir, wandb_file)
    try:
        run = read_wandb_run(path)
    except ImportError:
        notes.append(f"{path}: skipped, reading wandb offline runs needs `pip install wandb`")
        return None
    except (OSError, WandbFileError) as err:
        notes.append(f"{path}: skipped, unreadable wandb run ({err})")
        return None
    series = map_openrlhf_scalars(run.scalars)
    args = openrlhf_args_from_wandb_config(run.config)
    if not series:
        notes.append(f"{path}: no OpenRLHF training metrics in its history (empty log)")
        return None
    settings = settings_from_openrlhf_args(args) if "actor.policy_loss_type" in args else RunSettings()
    label = run.name or os.path.basename(run_dir)
    return TrainingRun(label=label, source=path, kind="openrlhf", settings=settings, series=series)


def _merge_into(run: TrainingRun, extra: TrainingRun) -> None:
    """Tensorboard and wandb (or verl JSONL) logs of the same run: tensorboard's series win, the
    other fills the metrics tensorboard lacks; its settings fill the fields still unknown."""
    for name, series in extra.series.items():
        run.series.setdefault(name, series)
    run.settings = run.settings.filled_from(extra.settings)
    run.source = f"{run.source} + {extra.source}"


def discover_training_runs(roots: Sequence[str], notes: List[str]) -> List[TrainingRun]:
    """Every run under ``roots``; labels are folder names (run_name for wandb runs), made unique
    with the path below the root where two folders share a name."""
    found: List[Tuple[str, str, TrainingRun]] = []  # (kind, relative path, run)
    for root in roots:
        before = len(found)
        root_name = os.path.basename(os.path.normpath(root))
        walked = []
        for folder, subfolders, files in os.walk(root):
            if LAB_METRICS_FILE in files and LAB_CELLS_DIR in subfolders:
                subfolders.remove(LAB_CELLS_DIR)  # a lab sweep: its metrics.jsonl holds the cells' lines
            walked.append((folder, files))
        for folder, files in sorted(walked):
            relative = os.path.normpath(os.path.join(root_name, os.path.relpath(folder, root)))
            name = os.path.basename(os.path.normpath(folder))
            if any(EVENT_FILE_MARKER in f for f in files):
                run = _tensorboard_run(folder, name, notes)
                if run:
                    found.append(("tensorboard", relative, run))
            wandb_files = sorted(f for f in files if WANDB_RUN_FILE.match(f))
            if wandb_files:
                run = _wandb_run(folder, wandb_files[0], notes)
                if run:
                    found.append(("wandb", relative, run))
            if LAB_METRICS_FILE in files:
                for run in read_lab_runs(os.path.join(folder, LAB_METRICS_FILE), name, notes):
                    found.append(("lab", relative, run))
            for verl_log in sorted(f for f in files if f.endswith(".jsonl") and f != LAB_METRICS_FILE):
                run = _verl_jsonl_run(os.path.join(folder, verl_log), notes)
                if run:
                    found.append(("verl-jsonl", os.path.join(relative, verl_log), run))
        if len(found) == before:
            notes.append(
                f"{root}: no training logs found (tensorboard event files, wandb runs, metrics.jsonl, verl JSONL)"
            )
    return _unique_labels(found)


def _unique_labels(found: List[Tuple[str, str, TrainingRun]]) -> List[TrainingRun]:
    by_label: Dict[str, List[Tuple[str, str, TrainingRun]]] = {}
    for entry in found:
        by_label.setdefault(entry[2].label, []).append(entry)
    runs: List[TrainingRun] = []
    for label, entries in by_label.items():
        kinds = [kind for kind, _, _ in entries]
        if sorted(kinds) in (["tensorboard", "wandb"], ["tensorboard", "verl-jsonl"]):
            tensorboard_run = next(run for kind, _, run in entries if kind == "tensorboard")
            _merge_into(tensorboard_run, next(run for kind, _, run in entries if kind != "tensorboard"))
            runs.append(tensorboard_run)
            continue
        if len(entries) > 1:
            for kind, relative, run in entries:
                if kind == "lab":
                    run.label = f"{os.path.dirname(relative)}/{run.label}"
                    run.group = f"{os.path.dirname(relative)}/{run.group}"
                else:
                    run.label = run.group = relative
        runs.extend(run for _, _, run in entries)
    return runs
