"""One table of PARTITIONS_* defaults (partitions/conf.py), and "0 turns it off" in the engine itself, so an
installed wheel behaves as the demo project does."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.test import override_settings

from partitions import conf
from partitions.engine import health
from partitions.engine.health import HealthVerdict


@pytest.mark.parametrize("name", sorted(conf.OFF_WHEN_ZERO))
@pytest.mark.parametrize("off", [0, 0.0, None])
def test_zero_turns_a_setting_off_like_none(name, off):
    with override_settings(**{f"PARTITIONS_{name}": off}):
        assert conf.get(name) is None


@pytest.mark.parametrize("name", sorted(conf.OFF_WHEN_ZERO))
def test_a_positive_value_is_kept(name):
    with override_settings(**{f"PARTITIONS_{name}": 7}):
        assert conf.get(name) == 7


def test_zero_stays_zero_where_it_does_not_mean_off():
    with override_settings(PARTITIONS_SPARE_DRAINS=0, PARTITIONS_SPLIT_RUNNING=False):
        assert conf.get("SPARE_DRAINS") == 0 and conf.get("SPLIT_RUNNING") is False


def test_a_zero_threshold_turns_the_built_in_health_check_off():
    with override_settings(PARTITIONS_MAX_REPLICATION_LAG_SECONDS=0, PARTITIONS_MAX_TRANSACTION_AGE_SECONDS=0):
        assert health._database_verdict(lag=10_000.0, oldest=10_000.0) == HealthVerdict.healthy()
    with override_settings(PARTITIONS_MAX_REPLICATION_LAG_SECONDS=60):
        assert not health._database_verdict(lag=10_000.0, oldest=None).ok


#: Demo settings whose default depends on how the database is reached (opsapp/settings.py says why).
DEPLOYMENT_DEFAULTS = {"DETECT_DEAD_BACKENDS", "WAKEUPS"}


def test_the_demo_settings_take_every_engine_default_from_conf():
    """Each setting the environment does not set is the table's default."""
    for name, default in conf.DEFAULTS.items():
        assert hasattr(settings, f"PARTITIONS_{name}"), name
        if name not in DEPLOYMENT_DEFAULTS and f"PARTITIONS_{name}" not in os.environ:
            assert getattr(settings, f"PARTITIONS_{name}") == default, name
