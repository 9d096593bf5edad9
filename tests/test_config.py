"""Config loading: every problem is reported with its path; overrides work."""

from __future__ import annotations

import math

import pytest

from tormentor.cli.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_from_mapping,
    config_to_mapping,
    load_config,
)


def test_empty_mapping_gives_defaults():
    assert config_from_mapping({}) == RunConfig()


def test_all_problems_are_collected_with_paths():
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(
            {
                "clients": {"epsilon": "five", "count": 2.5},
                "defences": {"roni_treshold": 0.1},
                "task": {"aggregation": "asynch"},
                "bogus": 1,
            }
        )
    problems = caught.value.problems
    text = "\n".join(problems)
    assert "clients.epsilon: expected a number or null, got 'five'" in text
    assert "clients.count: expected an integer" in text
    assert "defences.roni_treshold: unknown key; allowed:" in text and "roni_threshold" in text
    assert "task.aggregation: must be one of 'async', 'sync', got 'asynch'" in text
    assert "bogus: unknown key" in text
    assert len(problems) == 5


def test_engine_rules_are_reported_with_their_path():
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"defences": {"validation_rate": 2.0}, "stopping": {"max_updates": None}})
    text = "\n".join(caught.value.problems)
    assert "defences.validation_rate must be in [0, 1]" in text
    assert "stopping: set max_updates or deadline_s" in text


def test_overrides_parse_yaml_scalars():
    data = apply_overrides({"tor": {"mode": "private"}}, ["tor.mode=off", "clients.epsilon=inf", "seed=7"])
    config = config_from_mapping(data)
    assert config.tor.mode == "off" and math.isinf(config.clients.epsilon) and config.seed == 7


def test_bad_override_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError):
        apply_overrides({}, ["no_equals_sign"])
    path = tmp_path / "bad.yaml"
    path.write_text("clients: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "not valid YAML at line" in str(caught.value)


def test_shipped_config_is_valid_and_round_trips():
    config = load_config("configs/credit.yaml", ["tor.mode=off"])
    assert config_from_mapping(config_to_mapping(config)) == config
