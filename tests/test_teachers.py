"""Teachers: PaSST (hear21passt) and EfficientAT MobileNetV3, and starting them from published weights."""

from __future__ import annotations

import functools
import logging
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from asc.data.download import ChecksumError
from asc.errors import CheckpointError, MissingDependencyError
from asc.fileio import file_digest
from asc.models import pretrained as pt
from asc.models.pretrained import load_pretrained, pretrained_sources
from asc.models.registry import build_model, get_spec, list_models, load_bundle, save_bundle

TINY_PASST = {"embed_dim": 64, "depth": 2, "num_heads": 2, "input_tdim": 100}
MN_HEAD = ["classifier.5.bias", "classifier.5.weight"]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_all_but_head_equal(model: torch.nn.Module, source: dict[str, torch.Tensor], head: list[str]) -> None:
    own = model.state_dict()
    assert set(own) == set(source)
    for key in own:
        if key not in head:
            assert torch.equal(own[key], source[key]), key


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over HTTP on localhost: (folder, base URL)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def mn01_527(served):
    """An mn01 with the 527-class AudioSet head (non-trivial BN statistics), saved in the served folder."""
    torch.manual_seed(1)
    source = build_model("mn01", n_classes=527)
    with torch.no_grad():
        source.train()(torch.randn(4, 1, 128, 50))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = served[0] / "mn01_as.pt"
    torch.save(state, path)
    return state, path


# ---------------------------------------------------------------- EfficientAT


def test_mn10_has_the_published_parameter_count():
    model = build_model("mn10", n_classes=527)
    assert n_params(model) == 4_876_831
    assert round(n_params(model) / 1e6, 2) == 4.88


def test_mn_module_names_follow_the_official_checkpoints():
    state = build_model("mn10", n_classes=527).state_dict()
    assert len(state) == 312
    assert state["features.0.0.weight"].shape == (16, 1, 3, 3)
    assert state["features.1.block.0.0.weight"].shape == (16, 1, 3, 3)  # no expansion in the first block
    assert state["features.4.block.2.conc_se_layers.0.fc1.weight"].shape == (24, 72)
    assert state["features.16.0.weight"].shape == (960, 160, 1, 1)
    assert state["classifier.2.weight"].shape == (1280, 960)
    assert state["classifier.5.weight"].shape == (527, 1280)


def test_mn_registry_entries():
    assert {"mn04", "mn05", "mn10", "mn40"} <= {s.name for s in list_models()}
    spec = get_spec("mn10")
    assert spec.role == "teacher" and spec.frontend == "passt"
    assert spec.frontend_config["f_max"] == 15000.0
    assert spec.pretrained["mn10_as"]["url"].endswith("/v0.0.1/mn10_as_mAP_471.pt")
    assert build_model("mn04").classifier[2].in_features == 6 * 64


def test_mn_forward_backward_on_cpu():
    torch.manual_seed(0)
    model = build_model("mn04", n_classes=10).train()
    x = torch.randn(4, 1, 128, 100)
    logits = model(x)
    assert logits.shape == (4, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 10)  # a batch of one keeps its batch axis
        assert torch.equal(model(x), model(x))


# ---------------------------------------------------------------- PaSST


@pytest.fixture(scope="module")
def hear21passt():
    return pytest.importorskip("hear21passt.models.passt")


def test_tiny_passt_forward_backward_patchout_and_silence(hear21passt, monkeypatch, capsys):
    monkeypatch.setattr(hear21passt, "first_RUN", True)  # the package's debug prints are on
    torch.manual_seed(0)
    model = build_model("passt", TINY_PASST, n_classes=10)
    tokens = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: tokens.append(args[0].shape[1]))
    x = torch.randn(3, 1, 128, 100)
    logits = model.train()(x)
    assert logits.shape == (3, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert not model.head_dist.weight.requires_grad  # unused by forward
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    # 12 x 9 patches + cls + dist; frequency patchout drops 6 of the 12 rows in training only
    assert tokens == [2 + 6 * 9, 2 + 12 * 9, 2 + 12 * 9]
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match=r"\[B, 1, 128, T\]"):
        model(torch.randn(1, 1, 64, 100))


def test_passt_default_is_passt_s(hear21passt):
    spec = get_spec("passt")
    assert spec.role == "teacher" and spec.frontend == "passt"
    url = spec.pretrained["passt_s_swa_p16_128_ap476"]["url"]
    assert url == ("https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/"
                   "passt-s-f128-p16-s10-ap.476-swa.pt")
    state = build_model("passt", n_classes=527).state_dict()
    assert state["patch_embed.proj.weight"].shape == (768, 1, 16, 16)
    assert state["freq_new_pos_embed"].shape == (1, 768, 12, 1)
    assert state["time_new_pos_embed"].shape == (1, 768, 1, 99)
    assert state["blocks.11.mlp.fc1.weight"].shape == (3072, 768)
    assert state["head.1.weight"].shape == state["head_dist.weight"].shape == (527, 768)


def test_passt_without_hear21passt_names_the_extra(monkeypatch):
    for module in ("hear21passt", "hear21passt.models", "hear21passt.models.passt"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=r'pip install "dcase-asc\[passt\]"'):
        build_model("passt", TINY_PASST)


def test_passt_starts_from_a_10s_checkpoint_with_another_head(hear21passt, tmp_path):
    torch.manual_seed(2)
    source = build_model("passt", {**TINY_PASST, "input_tdim": 998}, n_classes=527).state_dict()
    path = tmp_path / "passt_as.pt"
    torch.save(source, path)
    model = build_model("passt", {**TINY_PASST, "pretrained": str(path)}, n_classes=10)
    state = model.state_dict()
    assert torch.equal(state["time_new_pos_embed"], source["time_new_pos_embed"][..., :10])
    assert torch.equal(state["head.0.weight"], source["head.0.weight"])  # head LayerNorm kept
    assert state["head.1.weight"].shape == state["head_dist.weight"].shape == (10, 64)
    head = ["head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias", "time_new_pos_embed"]
    assert_all_but_head_equal(model, {**source, "time_new_pos_embed": state["time_new_pos_embed"]}, head)


# ---------------------------------------------------------------- pretrained loading


def test_sources_are_data_with_real_names():
    sources = pretrained_sources()
    assert sources["passt_s_swa_p16_128_ap476"].model == "passt"
    assert sources["mn10_as"].classes == 527
    for source in sources.values():
        assert get_spec(source.model).pretrained[source.name]["url"] == source.url
        assert source.sha256 == "" or len(source.sha256) == 64


def test_load_over_http_with_checksum_new_head(served, mn01_527, tmp_path):
    state, path = mn01_527
    url = f"{served[1]}/{path.name}"
    cache = tmp_path / "cache"
    model = build_model("mn01", n_classes=10)
    report = load_pretrained(model, url, sha256=file_digest(path), cache_dir=cache, progress=False)
    assert report.reinitialised == MN_HEAD
    assert report.path.is_relative_to(cache) and report.path.name == "mn01_as.pt"
    assert report.loaded == len(state) - 2
    assert_all_but_head_equal(model, state, MN_HEAD)
    assert model.state_dict()["classifier.5.weight"].shape == (10, 128)


def test_bad_checksum_is_refused_and_leaves_nothing(served, mn01_527, tmp_path):
    _, path = mn01_527
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="0" * 64):
        load_pretrained(build_model("mn01"), f"{served[1]}/{path.name}", sha256="0" * 64, cache_dir=cache,
                        progress=False)
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_unpinned_download_records_and_rechecks_its_digest(mn01_527, tmp_path, caplog):
    state, path = mn01_527
    url = path.as_uri()
    digest = file_digest(path)
    with caplog.at_level(logging.WARNING, logger="asc.models.pretrained"):
        report = load_pretrained(build_model("mn01"), url, cache_dir=tmp_path / "c", progress=False)
    assert report.sha256 == digest and digest in caplog.text
    record = report.path.with_name(report.path.name + ".sha256")
    assert record.read_text().strip() == digest
    report.path.write_bytes(b"corrupted")  # a damaged cache entry is fetched again
    model = build_model("mn01")
    assert load_pretrained(model, url, cache_dir=tmp_path / "c", progress=False).sha256 == digest
    assert_all_but_head_equal(model, state, MN_HEAD)


def test_builder_loads_a_named_source_into_the_default_cache(served, mn01_527, monkeypatch, tmp_path):
    state, path = mn01_527
    named = pt.PretrainedSource(name="mn01_as", url=f"{served[1]}/{path.name}", model="mn01",
                                sha256=file_digest(path), classes=527)
    monkeypatch.setattr(pt, "pretrained_sources", lambda: {"mn01_as": named})
    monkeypatch.setenv("ASC_CACHE_DIR", str(tmp_path / "asc-cache"))
    model = build_model("mn01", {"pretrained": "mn01_as"}, n_classes=10)
    assert_all_but_head_equal(model, state, MN_HEAD)
    assert len(list((tmp_path / "asc-cache" / "pretrained").rglob("mn01_as.pt"))) == 1


def test_same_head_size_loads_everything_and_key_map_strips_prefixes(mn01_527, tmp_path):
    state, _ = mn01_527
    wrapped = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in state.items()}}, wrapped)
    model = build_model("mn01", n_classes=527)
    report = load_pretrained(model, wrapped, key_map={"model.": ""})
    assert report.reinitialised == []
    assert_all_but_head_equal(model, state, [])


def test_incompatible_checkpoints_name_the_keys(mn01_527, tmp_path):
    state, path = mn01_527
    with pytest.raises(CheckpointError, match=r"classifier\.2\.weight: checkpoint \(128, 96\) vs model \(256, 192\)"):
        load_pretrained(build_model("mn02"), path)
    broken = dict(state, **{"extra.weight": torch.zeros(1)})
    del broken["features.1.block.0.0.weight"]
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['features\.1\.block\.0\.0\.weight'\].*extra\.weight"):
        load_pretrained(build_model("mn01"), tmp_path / "broken.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_pretrained(build_model("mn01"), tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="mn10_as"):
        load_pretrained(build_model("mn01"), tmp_path / "missing.pt")


def test_bundle_of_a_pretrained_teacher_reloads_without_its_source(mn01_527, tmp_path):
    _, path = mn01_527
    model = build_model("mn01", {"pretrained": str(path)}, n_classes=10)
    cfg = {**get_spec("mn01").defaults, "n_classes": 10, "pretrained": str(path)}
    bundle_path = save_bundle(tmp_path / "teacher.pt", model, "mn01", cfg, [f"c{i}" for i in range(10)])
    path.unlink()
    bundle = load_bundle(bundle_path)
    assert bundle.model_config["pretrained"] == str(path)
    for key, value in model.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[key], value), key
