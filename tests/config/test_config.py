"""Run configs: every shipped YAML loads; bad files give one clear error naming the problem."""

from pathlib import Path

import pytest

from adapters_geo import AdaptersGeoError
from adapters_geo.config.run import load_run_config
from adapters_geo.methods import validate

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "examples").glob("*.yaml"))  # experiments/ are checked in test_experiments.py


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    config = load_run_config(path)
    validate(config.method)
    assert path.read_text().startswith("#"), "each YAML starts with a comment giving its launch command"


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: tiny-llama\nmethod: {name: sft, lerning_rate: 1}\n", "unknown key 'lerning_rate' in .*: method"),
        ("model: tiny-llama\nbogus: 1\n", "unknown key 'bogus' in"),
        ("model: tiny-llama\nmethod: [sft]\n", "method = \\['sft'\\] is not a mapping"),
        ("model: tiny-llama\n  method: {name: sft\n", "is not valid YAML at line"),
        ("model: tiny-llama\nadapter: {kind: rank1}\n", "adapter.kind = 'rank1' is not allowed .*dense \\| lora \\| locked"),
        ("- just\n- a list\n", "does not hold a mapping"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(AdaptersGeoError, match=message) as err:
        load_run_config(path)
    assert "fix:" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "method, message",
    [
        ({"name": "dpo"}, "method.name = 'dpo' is not allowed .*sft \\| opd \\| rlvr"),
        ({"name": "opd"}, "needs a teacher"),
        ({"name": "rlvr", "group_size": 1}, "group_size ≥ 2"),
        ({"name": "rlvr", "token_fraction": 0.5, "token_select": "top_gap"}, "no teacher"),
        ({"name": "opd", "teacher": "self_hint", "rollout_source": "stale"}, "method.rollout_source = 'stale' is not allowed"),
        ({"name": "opd", "teacher": "self_hint", "mix_alpha": 1.5}, "mix_alpha = 1.5 is not allowed .* in \\[0, 1\\]"),
    ],
)
def test_method_validation(tmp_path, method, message):
    path = tmp_path / "run.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"model": "tiny-llama", "method": method}))
    with pytest.raises(AdaptersGeoError, match=message):
        validate(load_run_config(path).method)


def test_when_tracking_runs_is_no_part_of_a_runs_identity_unless_set(tmp_path):
    # train.track_background changes when a tracked step is measured, not what: left at its default (off) it is
    # absent from the resolved config, so every run resolved before it existed keeps its identity; a bad value is
    # one line naming the key
    path = tmp_path / "run.yaml"
    path.write_text("model: tiny-llama\nmethod: {name: sft}\n")
    assert "track_background" not in load_run_config(path).to_dict()["train"]
    path.write_text("model: tiny-llama\nmethod: {name: sft}\ntrain: {track_background: true}\n")
    assert load_run_config(path).to_dict()["train"]["track_background"] is True
    path.write_text("model: tiny-llama\nmethod: {name: sft}\ntrain: {track_background: sometimes}\n")
    with pytest.raises(AdaptersGeoError, match="track_background") as err:
        load_run_config(path)
    assert "\n" not in str(err.value)
