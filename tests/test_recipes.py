"""Recipes as data: packaged TOML files in the schema of ``--config``, listed and printed by ``asc recipes``, taken by
name or path by ``--recipe``, recorded in the run's ``config.toml`` with the sha256 of their content."""

from __future__ import annotations

import hashlib
import json

import pytest

from asc import resources
from asc.cli import main
from asc.config import read_toml
from asc.errors import ConfigError
from asc.train.recipes import RECIPES, build_config, default_recipe, list_recipes, load_recipe

TINY = ["model_config.base_channels=8", "batch_size=16", "eval_batch_size=64", "schedule.warmup_steps=2",
        "progress=false"]


def test_packaged_recipes_are_toml_files_in_the_config_schema():
    assert list_recipes() == ["baseline24", "baseline24_kd", "cpmobile23_kd", "device_finetune", "cpresnet_teacher",
                              "passt_teacher"]
    assert resources.names("teachers") == ["cpresnet_teacher", "passt_teacher"]
    for name in list_recipes():
        recipe = load_recipe(name)
        assert recipe.values == read_toml(recipe.path) == RECIPES[name]
        assert recipe.description and recipe.sha256 == hashlib.sha256(recipe.text.encode()).hexdigest()
        cfg = build_config(name)  # every key is a TrainConfig key of the right type
        assert cfg.recipe == name and cfg.recipe_sha256 == recipe.sha256
    # the published settings (DCASE24 baseline; DCASE25 device-specific fine-tuning)
    base = build_config("baseline24")
    assert (base.model, base.optim.name, base.optim.lr, base.schedule.name, base.schedule.warmup_steps) == \
        ("baseline24", "adamw", 5e-3, "cosine", 2000)
    assert (base.epochs, base.batch_size, base.augment.mixstyle_p, base.augment.mixstyle_alpha) == (150, 256, 0.4, 0.3)
    fine = build_config("device_finetune")
    assert (fine.optim.lr, fine.schedule.warmup_steps, fine.epochs, fine.augment.mixstyle_p) == (5e-4, 200, 50, 0.0)
    assert {default_recipe(m) for m in ("cpmobile", "passt", "cpresnet", "mn10")} == \
        {"cpmobile23_kd", "passt_teacher", "cpresnet_teacher", "baseline24"}


def test_recipes_list_and_show(capsys):
    assert main(["recipes", "list", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(listed) == list_recipes()
    assert listed["passt_teacher"]["folder"] == "teachers" and listed["passt_teacher"]["model"] == "passt"
    assert listed["baseline24"]["folder"] == "recipes"
    assert main(["recipes", "list"]) == 0
    assert "cpmobile23_kd" in capsys.readouterr().out
    assert main(["recipes", "show", "cpmobile23_kd"]) == 0
    assert capsys.readouterr().out == resources.resource("recipes", "cpmobile23_kd.toml").read_text()
    assert main(["recipes", "show", "nope"]) == 2
    assert "unknown recipe 'nope'; known: baseline24" in capsys.readouterr().err


def test_train_with_a_copied_and_edited_recipe_file(synth_data, tmp_path, capsys, monkeypatch):
    assert main(["recipes", "show", "baseline24"]) == 0
    text = capsys.readouterr().out.replace("lr = 5e-3", "lr = 0.02").replace("epochs = 150", "epochs = 1")
    assert "lr = 0.02" in text and "epochs = 1\n" in text
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.toml").write_text(text)
    args = ["train", "--recipe", "./my.toml", "--data", str(synth_data.dev), "--split", "50", "--name", "mine",
            "--runs-dir", str(tmp_path / "runs"), "--quiet", "--json"]
    for o in TINY:
        args += ["-o", o]
    assert main(args) == 0
    capsys.readouterr()
    recorded = read_toml(tmp_path / "runs" / "mine" / "config.toml")
    assert recorded["recipe"] == str((tmp_path / "my.toml").resolve())
    assert recorded["recipe_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert recorded["optim"]["lr"] == 0.02 and recorded["epochs"] == 1  # the edited values ran
    assert recorded["model_config"]["base_channels"] == 8  # -o still wins over the recipe
    assert len((tmp_path / "runs" / "mine" / "metrics.jsonl").read_text().splitlines()) == 1


def test_bad_recipe_file_names_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "baseline24"\n[optim]\nlrate = 0.1\n')
    with pytest.raises(ConfigError, match=r"bad.toml: .*unknown key\(s\) lrate"):
        load_recipe(bad)
    assert main(["train", "--recipe", str(bad), "--data", str(tmp_path)]) == 2
    assert "bad.toml" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="missing.toml: recipe file not found"):
        build_config(str(tmp_path / "missing.toml"))


def test_recipes_spell_out_their_augmentation_in_the_augment_section():
    """Masking and band jitter are augment keys of the recipe files, equal to the model's front-end recipe; the
    default distillation recipe is the baseline's augmentation plus mixup."""
    from asc.augment import FRONTEND_DEFAULTS
    from asc.models.registry import get_spec

    for name in list_recipes():
        values = RECIPES[name]
        assert "frontend" not in values and "amp" not in values
        if "model" in values:  # device_finetune keeps the general model's masks
            expected = FRONTEND_DEFAULTS[get_spec(values["model"]).frontend]
            assert {k: values["augment"][k] for k in expected} == expected, name
    kd = build_config("baseline24_kd").augment
    assert (kd.mixup_alpha, kd.mixstyle_p, kd.mixstyle_alpha, kd.roll_samples, kd.dir_p) == (0.3, 0.4, 0.3, 3200, 0.0)
    assert (kd.freq_mask, kd.time_mask, kd.fmin_aug_range, kd.fmax_aug_range) == (48, 0, 1, 1)
    assert (build_config("baseline24_kd").kd.lam, build_config("baseline24_kd").kd.temperature) == (0.02, 2.0)


# config.toml as the previous version wrote it (masks and jitter in [frontend], amp, a validation section)
OLD_CONFIG = """recipe = "cpmobile23_kd"
model = "cpmobile"
split = "25"
amp = false
eval_batch_size = 256

[validation]
fraction = 0.2
select = "best"

[frontend]
n_mels = 256
fmin_aug_range = 1
fmax_aug_range = 800
freq_mask = 40
time_mask = 0

[augment]
mixstyle_p = 0.4
dir_p = 0.0
roll_samples = 4000
mixup_alpha = 0.3
"""


def test_old_run_configs_and_recipe_files_load_in_todays_keys(tmp_path):
    from asc.train.config import load_train_config

    old = tmp_path / "config.toml"
    old.write_text(OLD_CONFIG)
    for cfg in (load_train_config(old), build_config(None, old), build_config(old)):
        assert (cfg.augment.freq_mask, cfg.augment.fmax_aug_range, cfg.augment.mixup_alpha) == (40, 800, 0.3)
        assert cfg.autocast == "off" and cfg.validation.fraction == 0.2 and cfg.frontend == {"n_mels": 256}
    assert build_config(old).recipe == str(old.resolve())
