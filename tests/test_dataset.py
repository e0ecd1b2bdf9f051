"""ClipDataset over the audio cache: items, labels, devices, cities, batches sliced from the cache, eval sets, DataLoader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio
from torch.utils.data import DataLoader

from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset, clip_loader
from asc.data.layout import open_eval_set
from asc.data.validate import open_dataset
from asc.errors import DatasetError


def test_split_items(synth_data):
    layout = open_dataset(synth_data.dev)
    ds = ClipDataset.from_split(layout, "test", progress=False)
    table = layout.split("test")
    assert len(ds) == len(table) and ds.labels == layout.labels and ds.devices == layout.devices
    for i in (0, len(ds) // 2, len(ds) - 1):
        item = ds[i]
        row = table.iloc[i]
        assert set(item) == {"audio", "label", "device", "city", "index", "filename"}
        assert item["filename"] == row["filename"] and item["index"] == i
        assert layout.labels[item["label"]] == row["scene_label"]
        assert layout.devices[item["device"]] == row["device"]
        assert layout.cities[item["city"]] == row["city"]
        assert item["audio"].dtype == torch.float32 and item["audio"].shape == (32000,)
        x, sr = sf.read(str(synth_data.dev / row["filename"]), dtype="float32")
        expected = torchaudio.functional.resample(torch.from_numpy(x), sr, 32000)
        torch.testing.assert_close(item["audio"], expected, atol=2e-5, rtol=0)
    assert sorted(set(ds.device_array)) == list(range(len(layout.devices)))  # all 9 devices in test
    np.testing.assert_array_equal(ds.label_array, table["label"].to_numpy())


def test_batches_are_one_read_of_the_cache_in_the_sampler_order(synth_data):
    """The loader only slices the cache: a batch equals the items it stands for, in the order given."""
    ds = ClipDataset.from_split(synth_data.dev, 25, progress=False)
    order = [7, 0, 3, 12, 5, 9, 1]
    batches = list(clip_loader(ds, 3, order))
    assert [len(b["index"]) for b in batches] == [3, 3, 1]
    assert torch.cat([b["index"] for b in batches]).tolist() == order
    for batch in batches:
        assert set(batch) == {"audio", "label", "device", "city", "index"} and batch["audio"].dtype == torch.float32
        for k, i in enumerate(batch["index"].tolist()):
            item = ds[i]
            torch.testing.assert_close(batch["audio"][k], item["audio"], atol=0, rtol=0)
            assert [batch[f][k].item() for f in ("label", "device", "city")] == [item["label"], item["device"],
                                                                                 item["city"]]
    assert torch.cat([b["index"] for b in clip_loader(ds, 4)]).tolist() == list(range(len(ds)))


def test_eval_set_unlabelled_with_device_ids(synth_data):
    layout = open_dataset(synth_data.dev)
    ev = open_eval_set(synth_data.eval)
    ds = ClipDataset.from_eval_set(ev, layout.labels, layout.devices)
    assert len(ds) == len(ev.files)
    assert (ds.label_array == -1).all()
    assert [layout.devices[d] for d in ds.device_array] == ev.files["device_id"].tolist()
    item = ds[0]
    assert item["filename"] == "audio/0.wav" and item["label"] == -1 and item["city"] == -1
    # without device ids (2024 style) every device is unknown
    no_ids = ClipDataset(ev.files[["filename"]], ds.cache, layout.labels, layout.devices)
    assert (no_ids.device_array == -1).all() and no_ids[1]["device"] == -1


def test_table_variants_and_errors(synth_data):
    layout = open_dataset(synth_data.dev)
    names = layout.meta["filename"].tolist()[:4]
    cache = load_cache(layout.root, names, progress=False)
    by_name = pd.DataFrame({"filename": names, "scene_label": layout.meta["scene_label"][:4],
                            "device": ["a", "s9", "", "b"]})
    ds = ClipDataset(by_name, cache, layout.labels, layout.devices)
    assert ds.label_array.tolist() == layout.meta["label"][:4].tolist()
    assert ds.device_array.tolist() == [0, -1, -1, 1]
    with pytest.raises(DatasetError, match="scene label 'beach'"):
        ClipDataset(by_name.assign(scene_label="beach"), cache, layout.labels, layout.devices)
    with pytest.raises(DatasetError, match="not in the audio cache"):
        ClipDataset(pd.DataFrame({"filename": ["audio/nope.wav"]}), cache, layout.labels, layout.devices)
    with pytest.raises(DatasetError, match="needs a filename column"):
        ClipDataset(pd.DataFrame({"file": names}), cache, layout.labels, layout.devices)


def test_dataloader_batches_with_workers(synth_data):
    ds = ClipDataset.from_split(synth_data.dev, "100", progress=False)
    loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=1)
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == len(ds)
    first = batches[0]
    assert first["audio"].shape == (16, 32000) and first["label"].dtype == torch.int64
    assert first["filename"] == ds.filenames[:16]
    torch.testing.assert_close(first["audio"][5], ds[5]["audio"])
