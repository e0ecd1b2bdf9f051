"""Teacher-logit store: the (ensemble-averaged) logits of teachers on the training clips, keyed by file name.

A store is one ``.logits`` file (NumPy ``.npz`` content, written atomically) plus a human-readable JSON sidecar
(``<path>.json``). It carries what it was computed from, and each is checked before its logits are used:

* the *dataset fingerprint*: SHA-256 over ``meta.csv`` and the covered file list (another dataset, or an altered
  file list, is refused);
* ``logits_sha256``: a checksum of the logits themselves (rows shuffled or edited after writing are refused);
* ``audio_sha256`` and the per-clip digests it covers: the content of every clip's source file, as the audio cache
  records it (:meth:`asc.data.cache.AudioCache.digests`); different audio under the same ``meta.csv`` is refused,
  naming the clips that differ (:meth:`TeacherLogits.check_audio`);

and its provenance (teacher runs and their dev-test accuracies). Students look logits up by file name
(:meth:`TeacherLogits.for_files`), never by position. :mod:`asc.train.ensemble` computes stores.
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

FORMAT = "asc.teacher_logits/2"
OLD_FORMATS = ("asc.teacher_logits/1",)  # without logit checksum and audio digests: recomputed, never trusted


class TeacherLogitsError(DatasetError):
    """A teacher-logit store is unreadable, altered, for another dataset or other audio, or misses files."""


class OutdatedStoreError(TeacherLogitsError):
    """A store of an older format, without the checksums this version verifies: recompute it."""


def logits_checksum(logits: np.ndarray) -> str:
    """SHA-256 of the float32 logits, row-major."""
    return hashlib.sha256(np.ascontiguousarray(logits, dtype=np.float32).tobytes()).hexdigest()


def audio_checksum(filenames: Sequence[str], digests: Sequence[str]) -> str:
    """SHA-256 over (file name, source digest) pairs in store order."""
    h = hashlib.sha256()
    for name, digest in zip(filenames, digests):
        h.update(f"{name}\t{digest}\n".encode())
    return h.hexdigest()


def dataset_fingerprint(meta_sha256: str, filenames: Sequence[str]) -> str:
    """SHA-256 over the dataset's ``meta.csv`` digest and the list of covered files (in store order)."""
    h = hashlib.sha256()
    h.update(meta_sha256.encode())
    for name in filenames:
        h.update(b"\n" + name.encode())
    return h.hexdigest()


@dataclass
class TeacherLogits:
    """Logits ``[N, n_classes]`` (float32) of ``filenames`` (as in ``meta.csv``), for classes ``labels``, computed
    from the clips whose source digests are ``audio_digests``."""

    filenames: list[str]
    logits: np.ndarray
    labels: list[str]
    meta_sha256: str
    audio_digests: list[str]
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
        if len(self.audio_digests) != len(self.filenames):
            raise TeacherLogitsError(f"teacher logits: {len(self.audio_digests)} audio digests for "
                                     f"{len(self.filenames)} files")

    @property
    def fingerprint(self) -> str:
        return dataset_fingerprint(self.meta_sha256, self.filenames)

    @classmethod
    def for_dataset(cls, root: str | Path, filenames: Sequence[str], logits: np.ndarray, labels: Sequence[str],
                    audio_digests: Sequence[str], provenance: dict[str, Any] | None = None) -> "TeacherLogits":
        """A store for the dataset at ``root`` (its ``meta.csv`` is fingerprinted) and the clips whose source digests
        are ``audio_digests`` (:meth:`asc.data.cache.AudioCache.digests`)."""
        return cls(list(filenames), logits, list(labels), file_digest(Path(root) / "meta.csv"), list(audio_digests),
                   dict(provenance or {}))

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (npz content) and ``path.json`` (summary), each atomically."""
        path = Path(path)
        created = self.provenance.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.provenance["created"] = created
        header = {"format": FORMAT, "labels": self.labels, "meta_sha256": self.meta_sha256,
                  "fingerprint": self.fingerprint, "logits_sha256": logits_checksum(self.logits),
                  "audio_sha256": audio_checksum(self.filenames, self.audio_digests), "n_files": len(self.filenames),
                  "provenance": self.provenance}
        buf = io.BytesIO()
        np.savez(buf, logits=self.logits, filenames=np.array(self.filenames, dtype=str),
                 audio_digests=np.array(self.audio_digests, dtype=str),
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
                if header.get("format") in OLD_FORMATS:
                    raise OutdatedStoreError(f"{path}: a store of format {header['format']}, made without a checksum "
                                             f"of its logits or of the audio they were computed from; recompute it "
                                             f"with `asc teachers ensemble`")
                if header.get("format") != FORMAT:
                    raise TeacherLogitsError(f"{path}: unknown format {header.get('format')!r}, expected {FORMAT}")
                logits, filenames = z["logits"], [str(f) for f in z["filenames"]]
                digests = [str(d) for d in z["audio_digests"]]
        except TeacherLogitsError:
            raise
        except Exception as e:  # numpy raises many types for a damaged file
            raise TeacherLogitsError(f"{path}: not a readable teacher-logit store: {e}") from None
        store = cls(filenames, logits, list(header["labels"]), header["meta_sha256"], digests,
                    header.get("provenance", {}))
        if store.fingerprint != header["fingerprint"]:
            raise TeacherLogitsError(f"{path}: fingerprint mismatch (file list altered); recompute the store")
        if logits_checksum(store.logits) != header.get("logits_sha256"):
            raise TeacherLogitsError(f"{path}: the logits differ from their checksum (logits_sha256 "
                                     f"{str(header.get('logits_sha256'))[:12]}…, now "
                                     f"{logits_checksum(store.logits)[:12]}…): rows were shuffled or edited after "
                                     f"the store was written; recompute it")
        if audio_checksum(filenames, digests) != header.get("audio_sha256"):
            raise TeacherLogitsError(f"{path}: the audio digests differ from their checksum (audio_sha256); the store "
                                     f"was altered after it was written; recompute it")
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

    def check_audio(self, cache, filenames: Sequence[str], source: str = "teacher logits") -> None:
        """Error unless the clips ``filenames`` in ``cache`` (an :class:`~asc.data.cache.AudioCache`) are the audio
        the logits were computed from (same source digests), naming the clips that differ."""
        rows = [self._index.get(name, -1) for name in filenames]
        known = [(name, r) for name, r in zip(filenames, rows) if r >= 0]
        now = cache.digests([name for name, _ in known])
        differ = [(name, self.audio_digests[r], d) for (name, r), d in zip(known, now) if self.audio_digests[r] != d]
        if differ:
            examples = ", ".join(f"{name} (now {d}, store {s})" for name, s, d in differ[:3])
            raise TeacherLogitsError(
                f"{source}: the audio of {len(differ)} of {len(known)} clip(s) differs from the audio the logits were "
                f"computed from, e.g. {examples}; recompute the teacher logits on this audio with "
                f"`asc teachers ensemble`")

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
