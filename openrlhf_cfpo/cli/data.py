"""Benchmark files for offline machines: ``data fetch`` downloads them, ``data verify DIR`` checks a folder.

``fetch`` downloads every file the chosen benchmarks read (default: all) from its canonical source into
the download cache, or ``--to DIR``, skipping copies that are already intact, and prints the folder to
pass as ``--data-dir`` / ``OPENRLHF_CFPO_DATA_DIR``; with IFEval it also fetches NLTK's punkt_tab.
``verify`` checks each benchmark's files in DIR: present, parseable, and equal to the pinned sha256
where the source revision is pinned. The file list is each benchmark module's ``DATA_FILES``
(docs/evaluation.md, "Offline compute nodes").
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HELP = "fetch benchmark files (and NLTK punkt) for offline nodes, or verify a data folder"
PUNKT = "tokenizers/punkt_tab/english/"  # what IFEval's sentence splitter looks up on NLTK's path


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download benchmark files into the cache or --to DIR")
    _add_selection(fetch)
    fetch.add_argument("--to", metavar="DIR", help="target folder (default: the download cache, $OPENRLHF_CFPO_DATA_CACHE)")
    verify = actions.add_parser("verify", help="check a data folder: files present, parseable, pinned sha256")
    verify.add_argument("dir", metavar="DIR", help="a folder laid out like the download cache (a --data-dir)")
    _add_selection(verify)


def _add_selection(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--suite", help="a suite of evaluation/suites.yaml, or all")
    group.add_argument(
        "--benchmarks", metavar="A,B", help="benchmark names (ifeval, math500, openllm.gsm8k, ifeval.reference_gpt4, ...)"
    )


def run(args, passthrough) -> int:
    from openrlhf_cfpo.evaluation.registry import UnknownBenchmarkError
    from openrlhf_cfpo.evaluation.suites import SuiteError

    try:
        units, explicit = select_units(args.suite, args.benchmarks)
    except (UnknownBenchmarkError, SuiteError) as err:
        return _error(args.action, err)
    return fetch(units, args.to) if args.action == "fetch" else verify(Path(args.dir), units, explicit)


def _error(action: str, message) -> int:
    print(f"openrlhf-cfpo data {action}: error: {message}", file=sys.stderr)
    return 2


Units = Dict[str, Tuple]  # name -> its DataFiles, in the order printed


def all_units() -> Units:
    """Every benchmark's ``DATA_FILES``, in the registry's order, then the chat tokenizers the tests use."""
    from openrlhf_cfpo.evaluation.data import TOKENIZER_FILES
    from openrlhf_cfpo.evaluation.registry import BENCHMARK_MODULES, load_benchmark

    units: Units = {}
    for benchmark in BENCHMARK_MODULES:
        units.update(getattr(load_benchmark(benchmark), "DATA_FILES", {}))
    units.update(TOKENIZER_FILES)
    return units


def select_units(suite: Optional[str], benchmarks: Optional[str]) -> Tuple[Units, bool]:
    """The units named by --suite / --benchmarks (all when neither), and whether they were named."""
    from openrlhf_cfpo.evaluation.registry import resolve_benchmarks
    from openrlhf_cfpo.evaluation.suites import suite_benchmarks

    units = all_units()
    if not suite and not benchmarks:
        return units, False
    names = suite_benchmarks(suite) if suite else [name.strip() for name in benchmarks.split(",") if name.strip()]
    chosen: List[str] = []
    for name in names:
        if name in units:
            chosen.append(name)
            continue
        for benchmark, tasks in resolve_benchmarks([name]).items():
            prefixes = [benchmark] if tasks is None else [f"{benchmark}.{task}" for task in tasks] + list(tasks)
            chosen += [unit for unit in units if unit in prefixes or any(unit.startswith(f"{p}.") for p in prefixes)]
    return {unit: units[unit] for unit in dict.fromkeys(chosen)}, True


def fetch(units: Units, to: Optional[str]) -> int:
    import logging

    from openrlhf_cfpo.evaluation import data

    logging.getLogger(data.__name__).setLevel(logging.WARNING)  # the progress lines below say it
    root = Path(to) if to else data.cache_root()
    specs = list({spec.relpath: spec for files in units.values() for spec in files}.values())
    fetched, intact, failed = [], [], []
    for index, spec in enumerate(specs, start=1):
        path = root / spec.relpath
        problem = data.check_file(spec, path)
        if problem is None:
            intact.append(spec.relpath)
            continue
        replacing = "" if not path.exists() else f" (replacing: {problem})"
        print(f"[{index}/{len(specs)}] {spec.url} -> {path}{replacing}", file=sys.stderr, flush=True)
        try:
            data.download(spec, path)
        except data.SourceUnreachable as err:
            return _error("fetch", err)  # offline: every other file would fail the same way
        except data.DataError as err:
            print(f"openrlhf-cfpo data fetch: {err}", file=sys.stderr)
            failed.append(spec.relpath)
            continue
        fetched.append(spec.relpath)
    print(f"fetched {len(fetched)} file(s), {len(intact)} already intact, {len(failed)} failed")
    for label, relpaths in (("fetched", fetched), ("failed", failed)):
        for relpath in relpaths:
            print(f"  {label}: {relpath}")
    if any(unit.split(".")[0] == "ifeval" for unit in units):
        punkt_error = fetch_punkt(root / "nltk_data" if to else None)
        if punkt_error:
            return _error("fetch", punkt_error)
    print(f"data folder: {root}  (openrlhf-cfpo eval --data-dir {root}; tests: export OPENRLHF_CFPO_DATA_DIR={root})")
    return 1 if failed else 0


def fetch_punkt(target: Optional[Path]) -> Optional[str]:
    """NLTK's punkt_tab into ``target`` (``--to DIR``: DIR/nltk_data) or NLTK's default download folder
    (~/nltk_data, on NLTK's search path); an error line, or None once it is there."""
    import io
    import warnings

    import nltk
    from nltk.downloader import Downloader

    paths = [str(target)] if target else None
    where = str(target) if target else Downloader().default_download_dir()
    try:
        nltk.data.find(PUNKT, paths=paths)
        print(f"NLTK punkt_tab: already in {where}")
    except LookupError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                nltk.download("punkt_tab", download_dir=where, quiet=True, raise_on_error=True, print_error_to=io.StringIO())
            except (ValueError, OSError) as err:
                return f"could not fetch NLTK punkt_tab from {Downloader.DEFAULT_URL} ({str(err).splitlines()[0][:160]})"
        print(f"NLTK punkt_tab: fetched into {where}")
    if target:
        print(f"NLTK data folder: {target}  (export NLTK_DATA={target})")
    return None


def verify(root: Path, units: Units, explicit: bool) -> int:
    """One line per unit: ok, absent (a data folder may hold a subset; an error when the unit was named),
    or what is wrong and the command that repairs it. Exit 1 on any problem or an empty folder."""
    from openrlhf_cfpo.evaluation.data import check_file

    if not root.is_dir():
        return _error("verify", f"{root} is not a folder: fetch one with `openrlhf-cfpo data fetch --to {root}`")
    bad = present = 0
    for unit, files in units.items():
        problems = [problem for spec in files if (problem := check_file(spec, root / spec.relpath))]
        command = f"openrlhf-cfpo data fetch --benchmarks {unit} --to {root}"
        if len(problems) == len(files) and not any((root / spec.relpath).exists() for spec in files):
            bad += explicit
            relpaths = ", ".join(spec.relpath for spec in files)
            print(f"{unit}: {'MISSING' if explicit else 'absent'} ({relpaths}); to add it: {command}")
        elif problems:
            bad += 1
            present += 1
            print(f"{unit}: FAILED: {'; '.join(problems)}; fix: {command}")
        else:
            present += 1
            pinned = sum(bool(spec.sha256) for spec in files)
            print(f"{unit}: ok ({len(files)} file(s), {pinned} sha256-pinned, {len(files) - pinned} parse-checked)")
    if not present:
        return _error("verify", f"{root} holds none of the benchmark files: is it a data folder?")
    return 1 if bad else 0
