"""Start a model from published weights: fetch (cached, checksummed, atomic), map key names, swap the head.

``load_pretrained(model, "mn10_as")`` takes a name from ``pretrained_sources.toml``, an http(s):// or file:// URL,
or a local file. Downloads land in ``$ASC_CACHE_DIR/pretrained`` (default ``~/.cache/asc/pretrained``), one folder
per URL. Without a pinned sha256 the first download logs the file's digest and records it beside the file; later
uses verify the cached file against that record. Everything must match the model exactly, except the
classification head (the model's ``head_prefixes``): when its shape differs (another number of classes) the model
keeps its freshly initialised head.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from asc import resources
from asc.config import read_toml
from asc.data.download import download, verify
from asc.errors import CheckpointError
from asc.fileio import file_digest, write_text
from asc.models.registry import load_state_dict_strict

log = logging.getLogger(__name__)

SOURCES_FILE = "pretrained_sources.toml"  # packaged in asc/resources/

KeyMap = Mapping[str, str] | Callable[[str], "str | None"]


@dataclass(frozen=True)
class PretrainedSource:
    """Published weights known by name."""

    name: str
    url: str
    model: str
    sha256: str = ""
    classes: int = 0
    description: str = ""


@dataclass
class PretrainedLoad:
    """What :func:`load_pretrained` did."""

    source: str
    path: Path
    sha256: str
    loaded: int  # tensors copied from the file
    reinitialised: list[str] = field(default_factory=list)  # head keys kept from the model's own init


@functools.cache
def pretrained_sources() -> dict[str, PretrainedSource]:
    """The named sources of ``asc/resources/pretrained_sources.toml``."""
    data = read_toml(resources.resource(SOURCES_FILE))
    return {name: PretrainedSource(name=name, **entry) for name, entry in data.items()}


def sources_for(model_name: str) -> dict[str, dict[str, str]]:
    """``{name: {"url", "sha256"}}`` of the sources that fit ``model_name`` (for ``ModelSpec.pretrained``)."""
    return {s.name: {"url": s.url, "sha256": s.sha256}
            for s in pretrained_sources().values() if s.model == model_name}


def pretrained_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$ASC_CACHE_DIR/pretrained``, else ``~/.cache/asc/pretrained``."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("ASC_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "asc") / "pretrained"


def fetch_pretrained(source: str | Path, sha256: str | None = None, cache_dir: str | Path | None = None,
                     progress: bool = True) -> tuple[Path, str]:
    """Resolve a source name, URL or local file to a verified local file; returns (path, its sha256)."""
    text = str(source)
    named = pretrained_sources().get(text)
    if named is not None:
        text, sha256 = named.url, sha256 or named.sha256 or None
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"pretrained {text!r}: no such file, and not a URL or a known name "
                f"({', '.join(sorted(pretrained_sources()))})")
        if sha256:
            verify(path, sha256=sha256)
        return path, sha256 or file_digest(path)
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(text).path)).name or "weights.pt"
    dest = pretrained_cache_dir(cache_dir) / hashlib.sha1(text.encode()).hexdigest()[:12] / name
    if sha256:
        download(text, dest, sha256=sha256, progress=progress)
        return dest, sha256.lower()
    record = dest.with_name(dest.name + ".sha256")
    if dest.is_file() and record.is_file():
        digest = file_digest(dest)
        if digest == record.read_text().strip():
            return dest, digest
        log.warning("%s: sha256 %s differs from the one recorded at its download; downloading it again", dest, digest)
        dest.unlink()
    download(text, dest, progress=progress)
    digest = file_digest(dest)
    write_text(record, digest + "\n")
    log.warning("%s: no sha256 pinned; the downloaded file has sha256 %s (pin it in %s or pass sha256=)",
                text, digest, SOURCES_FILE)
    return dest, digest


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a plain state dict, or one under ``state_dict`` (asc bundle, Lightning) or
    ``model``. Read with ``weights_only=True`` (no code from the file runs)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read it as a PyTorch weights file ({e}); "
                              "save a plain state dict (torch.save(model.state_dict(), path))") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not a state dict")
    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict: entries {bad[:5]} are not tensors")
    return dict(data)


def map_keys(state_dict: dict[str, torch.Tensor], key_map: KeyMap | None) -> dict[str, torch.Tensor]:
    """Rename keys: a mapping renames the first matching prefix (``{"model.": ""}`` strips one); a callable
    returns the new key, or None to drop the entry."""
    if key_map is None:
        return dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        if callable(key_map):
            new = key_map(key)
        else:
            new = next((to + key[len(frm):] for frm, to in key_map.items() if key.startswith(frm)), key)
        if new is not None:
            out[new] = value
    return out


def _in_head(key: str, head_prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in head_prefixes)


def load_pretrained(model: nn.Module, source: str | Path, sha256: str | None = None,
                    cache_dir: str | Path | None = None, key_map: KeyMap | None = None,
                    head_prefixes: Sequence[str] | None = None, progress: bool = True) -> PretrainedLoad:
    """Load published weights into ``model`` (in place).

    ``source``: a name from ``pretrained_sources.toml``, an http(s)/file URL, or a local file. ``head_prefixes``
    (default: the model's ``head_prefixes`` attribute) name the classification head: head entries whose shape
    differs from the model's, or that the file lacks, keep the model's initialisation. A model may define
    ``adapt_pretrained(state_dict) -> state_dict`` for layout changes (e.g. a shorter positional encoding). Any
    other missing, unexpected or mis-shaped key is a :class:`CheckpointError` that names them.
    """
    path, digest = fetch_pretrained(source, sha256=sha256, cache_dir=cache_dir, progress=progress)
    state = map_keys(read_state_dict(path), key_map)
    adapt = getattr(model, "adapt_pretrained", None)
    if callable(adapt):
        state = adapt(state)
    heads = tuple(getattr(model, "head_prefixes", ()) if head_prefixes is None else head_prefixes)
    own = model.state_dict()
    reinit = sorted(k for k in own if _in_head(k, heads) and (k not in state or state[k].shape != own[k].shape))
    merged = {k: v for k, v in state.items() if k not in reinit}
    merged.update({k: own[k] for k in reinit})
    load_state_dict_strict(model, merged, f"{source} ({path})" if str(source) != str(path) else str(path))
    if reinit:
        log.info("%s: new head %s (the file's head does not fit)", source, ", ".join(reinit))
    return PretrainedLoad(source=str(source), path=path, sha256=digest, loaded=len(merged) - len(reinit),
                          reinitialised=reinit)
