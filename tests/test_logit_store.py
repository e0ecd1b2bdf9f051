"""Teacher-logit stores carry a checksum of their logits and the content digests of the clips they were computed
from: shuffled rows, other audio under the same meta.csv, an edited file or an old-format store are refused,
naming what differs."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from asc.data.cache import cache_path, load_cache, source_digest
from asc.data.dataset import ClipDataset
from asc.data.validate import open_dataset
from asc.train.logits import OutdatedStoreError, TeacherLogits, TeacherLogitsError


@pytest.fixture
def dev(synth_data, tmp_path):
    return shutil.copytree(synth_data.dev, tmp_path / "dev")


def _store(root, tmp_path):
    layout = open_dataset(root)
    files = layout.split("100")["filename"].tolist()
    logits = np.random.default_rng(0).normal(size=(len(files), len(layout.labels))).astype(np.float32)
    digests = load_cache(root, files, progress=False).digests(files)
    path = TeacherLogits.for_dataset(root, files, logits, layout.labels, digests).save(tmp_path / "t.logits")
    return path, files, logits


def _rewrite(path, **arrays):
    with np.load(path) as z:
        content = {k: z[k] for k in z.files}
    content.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **content)
    path.write_bytes(buf.getvalue())


def test_shuffled_or_edited_logits_are_refused(dev, tmp_path):
    path, files, logits = _store(dev, tmp_path)
    loaded = TeacherLogits.load(path, dataset_root=dev)
    np.testing.assert_array_equal(loaded.for_files(files), logits)
    header = json.loads((tmp_path / "t.logits.json").read_text())
    assert header["logits_sha256"] and header["audio_sha256"] and header["format"] == "asc.teacher_logits/2"

    _rewrite(path, logits=logits[np.random.default_rng(1).permutation(len(logits))])
    with pytest.raises(TeacherLogitsError, match="logits differ from their checksum .*shuffled or edited"):
        TeacherLogits.load(path)
    _rewrite(path, logits=logits, audio_digests=np.array(["0" * 16] * len(files)))
    with pytest.raises(TeacherLogitsError, match="audio digests differ from their checksum"):
        TeacherLogits.load(path)


def test_logits_of_other_audio_under_the_same_meta_are_refused(dev, tmp_path):
    path, files, _ = _store(dev, tmp_path)
    store = TeacherLogits.load(path, dataset_root=dev)
    layout = open_dataset(dev)
    train = ClipDataset.from_split(layout, "25", progress=False)
    store.check_audio(train.cache, train.filenames)  # the same audio: accepted

    other = shutil.copytree(dev, tmp_path / "other")
    changed = train.filenames[3]
    audio, rate = sf.read(other / changed, dtype="float32")
    sf.write(other / changed, audio[::-1].copy(), rate, subtype="PCM_16")
    store.check_dataset(other)  # same meta.csv: the fingerprint cannot tell
    other_train = ClipDataset.from_split(open_dataset(other), "25", progress=False)
    with pytest.raises(TeacherLogitsError, match=rf"the audio of 1 of {len(other_train)} clip\(s\) differs .*"
                                                 rf"{changed}"):
        store.check_audio(other_train.cache, other_train.filenames, source=str(path))


def test_a_cache_made_before_digests_gets_them_once(dev):
    files = open_dataset(dev).split("10")["filename"].tolist()
    load_cache(dev, files, progress=False)
    index_path = cache_path(dev) / "index.json"
    index = json.loads(index_path.read_text())
    index["files"] = {name: entry[:3] for name, entry in index["files"].items()}  # as an older version wrote it
    index_path.write_text(json.dumps(index))
    cache = load_cache(dev, files, progress=False)
    assert cache.stats.reused == len(files)  # nothing decoded again
    assert cache.digests(files) == [source_digest(dev / f) for f in files]
    assert all(len(entry) == 4 for name, entry in json.loads(index_path.read_text())["files"].items()
               if name in files)


def test_an_old_format_store_is_refused_with_a_recompute_hint(dev, tmp_path):
    path, _, _ = _store(dev, tmp_path)
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
    _rewrite(path, header=np.array(json.dumps({**header, "format": "asc.teacher_logits/1"})))
    with pytest.raises(OutdatedStoreError, match="recompute it with `asc teachers ensemble`"):
        TeacherLogits.load(path)
