"""Suites (``--suite alignment|capability|reasoning|all``) as listed in ``evaluation/suites.yaml``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from openrlhf_cfpo.evaluation.registry import resolve_benchmarks

ALL = "all"


def config_dir() -> Path:
    """The top-level ``evaluation/`` folder (suites.yaml, judges/): the source checkout's, else the
    copy ``setup.py`` installs under ``<prefix>/share/openrlhf-cfpo/evaluation``."""
    checkout = Path(__file__).resolve().parents[2] / "evaluation"
    installed = Path(sys.prefix) / "share" / "openrlhf-cfpo" / "evaluation"
    return checkout if (checkout / "suites.yaml").is_file() else installed


class SuiteError(ValueError):
    pass


def read_suites(path: Optional[Path] = None) -> Dict[str, List[str]]:
    """{suite: [benchmark names]} from the YAML file; every name is checked against the registry."""
    path = Path(path or config_dir() / "suites.yaml")
    if not path.is_file():
        raise SuiteError(f"suite file {path} not found: reinstall openrlhf-cfpo or pass --suites FILE")
    try:
        suites = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SuiteError(f"suite file {path} is not valid YAML ({err}): fix or restore it") from err
    if not isinstance(suites, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) for n in names) for names in suites.values()
    ):
        raise SuiteError(f"suite file {path} must map each suite name to a list of benchmark names")
    if ALL in suites:
        raise SuiteError(f"suite file {path} must not define {ALL!r}: it is the union of the others")
    for suite, names in suites.items():
        try:
            resolve_benchmarks(names)
        except ValueError as err:
            raise SuiteError(f"suite {suite!r} in {path}: {err}") from err
    return suites


def suite_benchmarks(suite: str, path: Optional[Path] = None) -> List[str]:
    """The benchmark names of ``suite`` (``all`` = every suite in file order, duplicates dropped)."""
    suites = read_suites(path)
    if suite == ALL:
        return list(dict.fromkeys(name for names in suites.values() for name in names))
    if suite not in suites:
        raise SuiteError(f"unknown suite {suite!r}: choose from {', '.join([*suites, ALL])}")
    return list(suites[suite])

