"""Benchmark files: a local copy under ``--data-dir``, else downloaded from the canonical source and cached.

Every file has one place in a benchmark folder (``DataFile.relpath``), the layout `openrlhf-cfpo data fetch` writes.
With ``--data-dir DIR`` the file is ``DIR/relpath`` and nothing is downloaded; without it the file is
``CACHE/relpath``, downloaded once from ``DataFile.url`` (atomic write). CACHE is
``$OPENRLHF_CFPO_DATA_CACHE`` or ``~/.cache/openrlhf_cfpo/benchmarks`` — itself a valid ``--data-dir``.
Missing, unreadable or malformed files raise ``DataError`` naming the file and the fix.

Where the URL pins a source revision and that revision yields exactly the file of the CI mirror,
``DataFile.sha256`` records its digest: a download that differs is refused, and ``openrlhf-cfpo data
verify`` checks copies against it. Other files (unpinned URLs, layouts converted from another format)
are only checked to parse. ``openrlhf-cfpo data fetch`` (cli/data.py) walks the benchmarks' files.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from openrlhf_cfpo.runinfo import atomic_write_text

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 120


class DataError(ValueError):
    """A benchmark file that is missing, unreachable or malformed (message names the fix)."""


class SourceUnreachable(DataError):
    """The source host could not be reached (offline, DNS, proxy): every other download would fail too."""


@dataclass(frozen=True)
class DataFile:
    relpath: str  # place under --data-dir / the cache
    url: str  # canonical source
    access: Optional[str] = None  # how to get access to a gated source (sent with $HF_TOKEN)
    convert: Optional[Callable[[bytes], str]] = None  # downloaded bytes -> file text in the local layout
    sha256: Optional[str] = None  # digest of the file the pinned URL yields (after convert), where known
    member: Optional[str] = None  # path of the file inside the tar/zip archive at ``url``


LLAMA3_ACCESS = (
    "accept Meta's licence at https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct and export HF_TOKEN"
)
HUB = "https://huggingface.co"
# The two chat tokenizers whose Hub behaviour the tests' small fixtures reproduce (tests/fixtures/tokenizers,
# compared against these where present): Llama-3 adds BOS in its post-processor and ends turns with
# <|eot_id|>; Qwen3 has no BOS and ends turns with <|im_end|>. Not benchmark data, but fetched with it.
TOKENIZER_FILES = {
    "tokenizers.llama3": tuple(
        DataFile(f"tokenizers/meta_llama3_8b_instruct_hf/{name}",
                 f"{HUB}/meta-llama/Meta-Llama-3-8B-Instruct/resolve/main/{name}", access=LLAMA3_ACCESS)
        for name in ("tokenizer.json", "tokenizer_config.json")
    ),
    "tokenizers.qwen3": tuple(
        DataFile(f"tokenizers/qwen3/{name}", f"{HUB}/Qwen/Qwen3-8B/resolve/main/{name}")
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("OPENRLHF_CFPO_DATA_CACHE") or Path.home() / ".cache" / "openrlhf_cfpo" / "benchmarks")


def local_path(spec: DataFile, data_dir: Optional[Path]) -> Path:
    """Where ``spec`` lives: under ``data_dir`` when given, else in the download cache."""
    return Path(data_dir or cache_root()) / spec.relpath


def is_available(spec: DataFile, data_dir: Optional[Path]) -> bool:
    """True when the file is already on disk (no download attempted)."""
    return local_path(spec, data_dir).is_file()


def locate(spec: DataFile, data_dir: Optional[Path]) -> Path:
    """Path of the file: the ``--data-dir`` copy, or the cached download (downloading it now if needed)."""
    path = local_path(spec, data_dir)
    if path.is_file():
        return path
    if data_dir is not None:
        raise DataError(
            f"{path} not found: put {spec.relpath} (from {spec.url}) under --data-dir {data_dir}, "
            "or leave out --data-dir to download it"
        )
    download(spec, path)
    return path


def download(spec: DataFile, dest: Path) -> None:
    """Fetch ``spec.url`` (or its ``member``) into ``dest`` (atomic write), refusing content whose sha256
    differs from the pin."""
    logger.info("downloading %s -> %s", spec.url if not spec.member else f"{spec.url}:{spec.member}", dest)
    if spec.member:
        payload = _archive_member(_get_archive(spec.url, spec.access, spec.relpath.split("/")[0] + "/"), spec)
    else:
        payload = _get(spec.url, spec.access, spec.relpath)
    text = spec.convert(payload) if spec.convert else payload.decode("utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if spec.sha256 and digest != spec.sha256:
        raise DataError(
            f"{spec.url} yields sha256 {digest}, not the pinned {spec.sha256}: the source changed; "
            f"nothing was written to {dest} (report it, or pass --data-dir DIR with a verified DIR/{spec.relpath})"
        )
    atomic_write_text(dest, text)


def _get(url: str, access: Optional[str], relpath: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "openrlhf-cfpo"})
    token = os.environ.get("HF_TOKEN")
    if access:
        if not token:
            raise DataError(f"{url} is gated and HF_TOKEN is not set: {access}")
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403) and access:
            raise DataError(f"{url} is gated (HTTP {err.code}): {access}") from err
        raise DataError(f"could not download {url} (HTTP {err.code}): {_offline_fix(relpath, access)}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise SourceUnreachable(f"could not reach {url} ({reason}): {_offline_fix(relpath, access)}") from err


# The archive of the last member fetched, keyed by (url, access, target folder): the files of one archive
# (MMLU's 114 CSVs) download it once.
_get_archive = functools.lru_cache(maxsize=1)(_get)


def _archive_member(payload: bytes, spec: DataFile) -> bytes:
    """The bytes of ``spec.member`` inside the tar or zip archive ``payload``."""
    try:
        if zipfile.is_zipfile(io.BytesIO(payload)):
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                return archive.read(spec.member)
        with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
            member = archive.extractfile(spec.member)
            if member is None:
                raise KeyError(spec.member)
            return member.read()
    except (KeyError, tarfile.TarError) as err:
        raise DataError(f"{spec.url} holds no {spec.member}: {_offline_fix(spec.relpath, spec.access)}") from err


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(spec: DataFile, path: Path) -> Optional[str]:
    """What is wrong with the copy of ``spec`` at ``path`` (absent, unparseable, sha256 mismatch), or None."""
    if not path.is_file():
        return f"{spec.relpath} missing"
    if spec.sha256:
        digest = file_sha256(path)
        if digest != spec.sha256:
            return f"{spec.relpath} has sha256 {digest[:12]}…, expected {spec.sha256[:12]}…"
        return None
    parse = PARSERS.get(path.suffix)
    try:
        if parse is not None:
            parse(path)
        else:
            _read_text(path)
    except (DataError, ValueError) as err:
        return f"{spec.relpath} does not parse ({err})"
    return None


def _offline_fix(relpath: str, access: Optional[str]) -> str:
    gated = f" ({access})" if access else ""
    return f"check the network{gated}, or pass --data-dir DIR with DIR/{relpath}"


def read_jsonl(path: Path, required: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Records of a JSON-lines file; each must be an object holding the ``required`` fields."""
    records = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {lineno} is not valid JSON ({err.msg}): {_corrupt_fix(path)}") from err
        _check_fields(record, required, f"{path} line {lineno}")
        records.append(record)
    if not records:
        raise DataError(f"{path} holds no records: {_corrupt_fix(path)}")
    return records


def read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err.msg}, line {err.lineno}): {_corrupt_fix(path)}") from err


def read_json_records(path: Path, required: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """A JSON file holding a list of objects with the ``required`` fields."""
    records = read_json(path)
    if not isinstance(records, list) or not records:
        raise DataError(f"{path} must hold a non-empty JSON list of records: {_corrupt_fix(path)}")
    for index, record in enumerate(records):
        _check_fields(record, required, f"{path} record {index}")
    return records


def read_csv_rows(path: Path, columns: int, header: bool = False) -> List[List[str]]:
    """Rows of a CSV file, each with exactly ``columns`` cells (header row dropped when ``header``)."""
    rows = list(csv.reader(io.StringIO(_read_text(path))))
    if header:
        rows = rows[1:]
    rows = [row for row in rows if row]
    for index, row in enumerate(rows, start=1 + int(header)):
        if len(row) != columns:
            raise DataError(f"{path} row {index} has {len(row)} cells, expected {columns}: {_corrupt_fix(path)}")
    if not rows:
        raise DataError(f"{path} holds no rows: {_corrupt_fix(path)}")
    return rows


def read_csv_records(path: Path, required: Sequence[str] = ()) -> List[Dict[str, str]]:
    """Rows of a CSV file with a header row, as {column: cell}; the ``required`` columns must exist."""
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    missing = [name for name in required if name not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}: is this the right benchmark file?")
    records = list(reader)
    if not records:
        raise DataError(f"{path} holds no rows: {_corrupt_fix(path)}")
    return records


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DataError(f"{path} not found: restore it, or leave out --data-dir to download it") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {_corrupt_fix(path)}") from err


def _check_fields(record: Any, required: Sequence[str], where: str) -> None:
    if not isinstance(record, dict):
        raise DataError(f"{where} is not a JSON object")
    missing = [name for name in required if name not in record]
    if missing:
        raise DataError(f"{where} lacks field(s) {', '.join(missing)}: is this the right benchmark file?")


def _corrupt_fix(path: Path) -> str:
    if Path(path).resolve().is_relative_to(cache_root().resolve()):
        return f"delete {path} to download it again"
    return "replace it with the original file"


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(_read_text(path))
    except yaml.YAMLError as err:
        raise DataError(f"{path} is not valid YAML: {_corrupt_fix(path)}") from err


# file suffix -> reader that raises DataError/ValueError when the file is not well-formed
PARSERS: Dict[str, Callable[[Path], Any]] = {
    ".jsonl": read_jsonl,
    ".json": read_json,
    ".csv": lambda path: read_csv_records(path),
    ".yaml": _read_yaml,
}
