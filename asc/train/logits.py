"""Teacher-logit store: the (ensemble-averaged) logits of teachers on the training clips, keyed by file name.

A store is one ``.logits`` file (NumPy ``.npz`` content, written atomically) plus a human-readable JSON sidecar
(``<path>.json``). It carries the *dataset fingerprint* (SHA-256 over ``meta.csv`` and the covered file list) so
that logits computed for one dataset are never used with another, and its provenance (teacher runs and their
dev-test accuracies). Students look logits up by file name (:meth:`TeacherLogits.for_files`), never by position.
:mod:`asc.train.ensemble` computes stores.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from asc.errors import DatasetError
from asc.fileio import file_digest, write_bytes, write_json

FORMAT = "asc.teacher_logits/1"


class TeacherLogitsError(DatasetError):
    """A teacher-logit store is unreadable, for another dataset, or misses files."""


def dataset_fingerprint(meta_sha256: str, filenames: Sequence[str]) -> str:
    """SHA-256 over the dataset's ``meta.csv`` digest and the list of covered files (in store order)."""
    h = hashlib.sha256()
    h.update(meta_sha256.encode())
    for name in filenames:
        h.update(b"\n" + name.encode())
    return h.hexdigest()


@dataclass
class TeacherLogits:
    """Logits ``[N, n_classes]`` (float32) of ``filenames`` (as in ``meta.csv``), for classes ``labels``."""

    filenames: list[str]
    logits: np.ndarray
    labels: list[str]
    meta_sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.logits = np.asarray(self.logits, dtype=np.float32)
        if self.logits.ndim != 2 or self.logits.shape != (len(self.filenames), len(self.labels)):
            raise TeacherLogitsError(f"teacher logits: expected shape ({len(self.filenames)}, {len(self.labels)}), "
                                     f"got {self.logits.shape}")
        self._index = {name: i for i, name in enumerate(self.filenames)}
        if len(self._index) != len(self.filenames):
            dup = next(n for i, n in enumerate(self.filenames) if self._index[n] != i)
            raise TeacherLogitsError(f"teacher logits: duplicate file name {dup}")

    @property
    def fingerprint(self) -> str:
        return dataset_fingerprint(self.meta_sha256, self.filenames)

    @classmethod
    def for_dataset(cls, root: str | Path, filenames: Sequence[str], logits: np.ndarray, labels: Sequence[str],
                    provenance: dict[str, Any] | None = None) -> "TeacherLogits":
        """A store for the dataset at ``root`` (its ``meta.csv`` is fingerprinted)."""
        return cls(list(filenames), logits, list(labels), file_digest(Path(root) / "meta.csv"), dict(provenance or {}))

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (npz content) and ``path.json`` (summary), each atomically."""
        path = Path(path)
        created = self.provenance.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.provenance["created"] = created
        header = {"format": FORMAT, "labels": self.labels, "meta_sha256": self.meta_sha256,
                  "fingerprint": self.fingerprint, "n_files": len(self.filenames), "provenance": self.provenance}
        buf = io.BytesIO()
        np.savez(buf, logits=self.logits, filenames=np.array(self.filenames, dtype=str),
                 header=np.array(json.dumps(header, default=str)))
        write_bytes(path, buf.getvalue())
        write_json(sidecar_path(path), header)
        return path

    @classmethod
    def load(cls, path: str | Path, dataset_root: str | Path | None = None) -> "TeacherLogits":
        """Read a store; with ``dataset_root``, also check it was computed for that dataset."""
        path = Path(path)
        if not path.is_file():
            raise TeacherLogitsError(f"{path}: teacher logits not found; compute them with "
                                     f"`asc teachers ensemble RUN... --out {path} --data ROOT`")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                logits, filenames = z["logits"], [str(f) for f in z["filenames"]]
        except Exception as e:  # numpy raises many types for a damaged file
            raise TeacherLogitsError(f"{path}: not a readable teacher-logit store: {e}") from None
        if header.get("format") != FORMAT:
            raise TeacherLogitsError(f"{path}: unknown format {header.get('format')!r}, expected {FORMAT}")
        store = cls(filenames, logits, list(header["labels"]), header["meta_sha256"], header.get("provenance", {}))
        if store.fingerprint != header["fingerprint"]:
            raise TeacherLogitsError(f"{path}: fingerprint mismatch (file list altered); recompute the store")
        if dataset_root is not None:
            store.check_dataset(dataset_root, source=str(path))
        return store

    def check_dataset(self, root: str | Path, labels: Sequence[str] | None = None, source: str = "teacher logits"):
        """Error unless this store was computed for the dataset at ``root`` (same ``meta.csv``, same labels)."""
        meta = Path(root) / "meta.csv"
        digest = file_digest(meta) if meta.is_file() else "(no meta.csv)"
        if digest != self.meta_sha256:
            raise TeacherLogitsError(
                f"{source}: computed for another dataset (meta.csv sha256 {self.meta_sha256[:12]}…), but {meta} has "
                f"{digest[:12]}…; recompute the teacher logits on this dataset with `asc teachers ensemble`")
        if labels is not None and list(labels) != self.labels:
            raise TeacherLogitsError(f"{source}: class list {self.labels} differs from the dataset's {list(labels)}")

    def for_files(self, filenames: Sequence[str]) -> np.ndarray:
        """Logits ``[len(filenames), n_classes]`` in the given order; every file must be covered."""
        rows = [self._index.get(name, -1) for name in filenames]
        missing = [name for name, r in zip(filenames, rows) if r < 0]
        if missing:
            raise TeacherLogitsError(
                f"teacher logits do not cover {len(missing)} of {len(rows)} requested file(s), e.g. "
                f"{', '.join(missing[:5])}; compute them on a split containing these clips (split 100)")
        return self.logits[np.asarray(rows, dtype=np.int64)]


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")
