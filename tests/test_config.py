"""The typed config: defaults, TOML loading, and errors for unknown or mistyped keys."""

import pytest

from pipeline.config import Config, load_config, with_overrides
from pipeline.errors import ConfigError


def test_defaults_without_a_file():
    config = load_config(None)
    assert config == Config()
    assert config.data.horizon_days == 90 and config.train.promotion_metric == "empc"


def test_toml_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nseed = 7\ncandidates = ["logistic"]\n[campaign]\nmargin = 0.3\n')
    config = load_config(path)
    assert config.train.seed == 7 and config.train.candidates == ("logistic",)
    assert config.campaign.margin == 0.3 and config.campaign.offer_cost_months == 0.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("[train]\nseeds = 1\n", r"unknown key\(s\) seeds"),
        ("[trian]\nseed = 1\n", r"unknown key\(s\) trian"),
        ('[train]\nseed = "one"\n', "seed must be an integer"),
        ("[train]\nholdout_fraction = 1.5\n", "holdout_fraction must be between 0 and 1"),
        ('[train]\npromotion_metric = "accuracy"\n', "promotion_metric must be 'empc' or 'roc_auc'"),
        ("[scoring]\nworkers = 0\n", "scoring.workers must be at least 1"),
        ("[train\n", "not valid TOML"),
        ("[data]\nsnapshot_date = 5\n", r"\[data\]: snapshot_date must be str, got 5$"),
        ("[train]\ncandidates = [1]\n", r"\[train\]: candidates must be a list of str, got \[1\]$"),
        ('[train]\ncandidates = "logistic"\n', r"candidates must be a list, got 'logistic'$"),
        ("[train]\nblend = 1\n", r"blend must be bool, got 1$"),
        ("[train]\nholdout_fraction = true\n", r"holdout_fraction must be a number, got True$"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    config = with_overrides(Config(), train={"seed": 3, "cv_folds": None})
    assert config.train.seed == 3 and config.train.cv_folds == 5
    assert "train.seed" in config.flat() and config.flat()["train.seed"] == 3


def test_documented_example_loads_and_every_key_is_documented(tmp_path):
    import dataclasses
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "example.toml").write_text(example)
    config = load_config(tmp_path / "example.toml")
    assert config.train.promotion_metric == "roc_auc" and len(config.scoring.actions) == 1
    from pipeline.targeting import parse_rules

    assert parse_rules(config.scoring.actions)[0].action == "Senior agent call with a premium retention offer"
    for section in dataclasses.fields(Config):
        for key in dataclasses.fields(type(getattr(Config(), section.name))):
            assert f"| `{key.name}` |" in doc, f"{section.name}.{key.name} is not documented"


def test_a_configuration_saved_as_json_builds_again_with_its_unset_keys():
    import dataclasses
    import json

    from pipeline.config import Config, config_from_dict

    saved = json.loads(json.dumps(dataclasses.asdict(Config())))  # None for unset optional keys, lists for tuples
    assert saved["data"]["snapshot_date"] is None
    assert config_from_dict(saved, "the service's configuration") == Config()
