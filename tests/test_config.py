"""Typed configs: TOML load, dotted overrides, round trip, clear errors."""

from dataclasses import dataclass, field

import pytest

from asc.config import dumps_toml, from_dict, load_config, parse_override, save_config, to_dict
from asc.errors import ConfigError


@dataclass
class Opt:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    name: str = "adam"


@dataclass
class Cfg:
    opt: Opt = field(default_factory=Opt)
    epochs: int = 10
    teacher: str | None = None
    blocks: tuple[int, ...] = (3, 2, 1)


def test_overrides_parse_toml_values():
    assert parse_override("opt.lr=5e-3") == (["opt", "lr"], 5e-3)
    assert parse_override("blocks=[1, 2]") == (["blocks"], [1, 2])
    assert parse_override("opt.name=adamw") == (["opt", "name"], "adamw")


def test_load_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('epochs = 3\n[opt]\nlr = 0.01\nname = "adamw"\n')
    cfg = load_config(Cfg, path, ["opt.lr=2e-3", "teacher=teachers/t.logits", "blocks=[2,2,2]"])
    assert cfg.epochs == 3 and cfg.opt.lr == 2e-3 and cfg.opt.name == "adamw"
    assert cfg.teacher == "teachers/t.logits" and cfg.blocks == (2, 2, 2)


def test_round_trip_through_toml(tmp_path):
    cfg = load_config(Cfg, overrides=["epochs=7", "opt.betas=[0.8, 0.9]"])
    save_config(cfg, tmp_path / "out.toml")
    again = load_config(Cfg, tmp_path / "out.toml")
    assert again == cfg
    assert "teacher" not in dumps_toml(to_dict(cfg))


@pytest.mark.parametrize("override, message", [
    ("opt.lrr=1", "unknown key(s) lrr"),
    ("epochs=ten", "epochs: expected an integer"),
    ("opt.betas=[1.0]", "expected 2 items"),
    ("nokey", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(Cfg, overrides=[override])


def test_bad_toml_names_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(Cfg, path)
    with pytest.raises(ConfigError, match="expected a table"):
        from_dict(Cfg, {"opt": 3})
