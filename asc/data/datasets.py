"""``asc data download NAME DIR``: the field's public datasets, from nothing to a checked folder in the TAU layout.

The catalog is data (``asc/resources/datasets/<name>.toml``): each entry names its archives with the md5 their
publisher gives, or (``zenodo_query``) the Zenodo record whose published md5 values are read at download time.
Every archive is fetched with :func:`asc.data.download.download` (resumable with HTTP ``Range``, md5-verified),
zip archives are extracted into ``DIR`` (through a staging folder, so a killed extraction is redone, never half
kept), and the result is checked: a development set with :func:`asc.data.check.check_dataset_report`, an
evaluation set against its file list, impulse responses by decoding each file. Progress lives in
``DIR/.asc-download/<name>.json``; running the command again skips what is done and resumes what is not.

Hand-written on :mod:`asc.data.download` rather than soundata: soundata's TAU 2022 loader knows the development
set (its md5 values are the ones pinned here) but not the 2024 evaluation set or MicIRP, its downloads do not
resume, and it would add librosa and jams as run-time dependencies of the toolkit.
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import soundfile as sf

from asc import resources
from asc.config import from_dict, read_toml
from asc.data.check import check_dataset_report, format_report
from asc.data.download import DownloadError, download
from asc.data.layout import open_eval_set
from asc.errors import DatasetError
from asc.fileio import write_json

log = logging.getLogger(__name__)

STATE_DIR = ".asc-download"


@dataclass
class Archive:
    """One file to fetch: ``url`` (default ``base_url`` + name), its md5, its size in bytes when known."""

    name: str
    md5: str = ""
    size: int = 0
    url: str = ""


@dataclass
class DatasetSpec:
    name: str
    title: str
    folder: str  # the folder the data ends up in, under DIR
    kind: Literal["tau", "eval", "dirs"]  # what the result is checked as
    homepage: str = ""
    license: str = ""
    base_url: str = ""
    extract: bool = True  # zip archives extracted into DIR (False: files saved into DIR/folder)
    zenodo_api: str = ""
    zenodo_query: str = ""  # archives and md5 from the Zenodo record this finds (instead of ``files``)
    files: list[Archive] = field(default_factory=list)


def list_datasets() -> list[str]:
    return resources.names("datasets")


def load_spec(name_or_path: str | Path) -> DatasetSpec:
    """A catalog entry by name, or a catalog TOML file by path; every archive needs an md5 (or the entry a
    ``zenodo_query``)."""
    found = resources.locate("datasets", name_or_path, "dataset")
    spec = from_dict(DatasetSpec, read_toml(found), where=str(found))
    if not spec.files and not spec.zenodo_query:
        raise DatasetError(f"{found}: no [[files]] and no zenodo_query: nothing to download")
    for a in spec.files:
        if len(a.md5) != 32:
            raise DatasetError(f"{found}: file {a.name}: md5 {a.md5!r} is not 32 hex digits")
        if not (a.url or spec.base_url):
            raise DatasetError(f"{found}: file {a.name}: no url and no base_url")
    return spec


def _read_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise DownloadError(f"{url}: cannot read the record metadata ({e}); check the network") from None


def zenodo_archives(spec: DatasetSpec) -> tuple[str, list[Archive]]:
    """(record id, archives with their published md5) of the Zenodo record ``spec.zenodo_query`` finds that holds
    ``<folder>.*.zip`` files."""
    api = spec.zenodo_api.rstrip("/")
    url = f"{api}/records?q={urllib.parse.quote(spec.zenodo_query)}&size=20"
    for hit in _read_json(url).get("hits", {}).get("hits", []):
        files = hit.get("files", [])
        entries = files.get("entries", []) if isinstance(files, dict) else files
        if isinstance(entries, dict):
            entries = list(entries.values())
        archives = []
        for f in entries:
            key, checksum = f.get("key", ""), f.get("checksum", "")
            if not (key.startswith(spec.folder + ".") and key.endswith(".zip") and checksum.startswith("md5:")):
                continue
            links = f.get("links", {})
            link = links.get("content") or links.get("self") or f"{api}/records/{hit['id']}/files/{key}/content"
            archives.append(Archive(name=key, md5=checksum[4:], size=int(f.get("size") or 0), url=link))
        if archives:
            return str(hit.get("id", "")), sorted(archives, key=lambda a: (".audio." in a.name, len(a.name), a.name))
    raise DownloadError(f"{url}: no Zenodo record with {spec.folder}.*.zip files; the dataset may have moved "
                        f"(see {spec.homepage})")


def _member_path(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DatasetError(f"{archive}: member {name!r} would be written outside the target folder; not extracted")
    return path


def _merge(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst`` (files replace files of the same name)."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir() and target.is_dir():
            _merge(item, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)


def extract(archive: Path, dest: Path, folder: str, staging: Path) -> int:
    """Extract the zip ``archive`` so that its data lands in ``dest/folder`` (archives that carry the folder name
    as their top level go to ``dest``); returns the number of files."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            paths = [_member_path(archive, m.filename) for m in members]
            top = all(p.parts and p.parts[0] == folder for p in paths)
            zf.extractall(staging)
    except zipfile.BadZipFile as e:
        raise DatasetError(f"{archive}: not a valid zip archive ({e}); delete it and download again") from None
    _merge(staging, dest if top else dest / folder)
    shutil.rmtree(staging, ignore_errors=True)
    return len(members)


def check_download(spec: DatasetSpec, root: Path, progress: bool = True) -> dict[str, Any]:
    """Check what was downloaded: ``{"ok", "summary", "problems"}``."""
    if spec.kind == "tau":
        report = check_dataset_report(root, check_audio=True, progress=progress)
        return {"ok": report.ok, "summary": format_report(report), "problems": report.to_dict()["problems"]}
    if spec.kind == "eval":
        files = open_eval_set(root).files["filename"]
        missing = [f for f in files if not (root / f).is_file()]
        problems = [{"kind": "missing_audio", "file": f} for f in missing]
        return {"ok": not missing, "problems": problems,
                "summary": f"{root}: {len(files)} files listed in evaluation_setup/fold1_test.csv, "
                           f"{len(missing)} missing" + (f" (first: {missing[0]})" if missing else "")}
    problems = []
    wavs = sorted(root.glob("*.wav"))
    for path in wavs:
        try:
            if sf.info(str(path)).frames == 0:
                problems.append({"kind": "empty_audio", "file": path.name})
        except RuntimeError as e:
            problems.append({"kind": "unreadable_audio", "file": path.name, "message": str(e)})
    expected = len(spec.files)
    if expected and len(wavs) != expected:
        problems.append({"kind": "count", "file": str(root), "message": f"{len(wavs)} of {expected} files"})
    return {"ok": not problems, "problems": problems,
            "summary": f"{root}: {len(wavs)} impulse responses, {len(problems)} problem(s)"}


def download_dataset(name: str | Path, dest: str | Path, base_url: str | None = None, keep_archives: bool = False,
                     check: bool = True, progress: bool = True) -> dict[str, Any]:
    """Download, verify, extract and check catalog entry ``name`` into ``dest``; resumable (run it again)."""
    spec = load_spec(name)
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    state_dir = dest / STATE_DIR
    state_path = state_dir / f"{spec.name}.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    done: dict[str, str] = state.get("done", {})  # archive -> its md5, once extracted / saved
    record, archives = "", spec.files
    if not archives:
        record, archives = zenodo_archives(spec)
    base = base_url or spec.base_url
    base = base if base.endswith("/") else base + "/"
    for i, a in enumerate(archives, 1):
        if done.get(a.name) == a.md5:
            continue
        url = a.url if a.url and not base_url else base + urllib.parse.quote(a.name)
        log.info("[%d/%d] %s", i, len(archives), a.name)
        if spec.extract:
            path = download(url, state_dir / a.name, md5=a.md5, progress=progress, resume=True)
            extract(path, dest, spec.folder, state_dir / f"{a.name}.extract")
            if not keep_archives:
                path.unlink()
        else:
            download(url, dest / spec.folder / a.name, md5=a.md5, progress=progress, resume=True)
        done[a.name] = a.md5
        write_json(state_path, {"dataset": spec.name, "title": spec.title, "zenodo_record": record,
                                "archives": [{"name": x.name, "md5": x.md5, "url": x.url} for x in archives],
                                "done": done})
    root = dest / spec.folder
    if not root.is_dir():
        raise DatasetError(f"{root}: not created by the archives of {spec.name}; see {state_path}")
    result = {"dataset": spec.name, "root": str(root), "archives": len(archives), "zenodo_record": record,
              "license": spec.license}
    if check:
        result["check"] = check_download(spec, root, progress=progress)
    return result
