"""Property-based tests of the plan loader: any mapping gives a plan that round-trips through
JSON, or a ConfigError that names the field, never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesmith.core.errors import ConfigError
from edgesmith.plan import Plan

SCALARS = st.none() | st.booleans() | st.integers(-5, 500) | st.floats(allow_nan=False)
VALUES = st.recursive(
    SCALARS | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
NAMES = st.sampled_from(
    ["cnn-digits", "lstm-digits", "tflite:int8", "onnx", "litert", "tflite:x", ""]
)
KEYS = st.sampled_from(
    ["models", "recipes", "targets", "backends", "bench", "name", "data_dir",
     "calibration_samples", "parity_samples", "recipe_targets", "recipe_models", "typo"]
)  # fmt: skip
PLANS = st.dictionaries(KEYS, VALUES | st.lists(NAMES, max_size=3) | NAMES, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(PLANS)
def test_any_mapping_is_a_round_tripping_plan_or_a_config_error(data: dict) -> None:
    try:
        plan = Plan.from_dict(data)
    except ConfigError as exc:
        assert str(exc)
        return
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(["runs", "warmup", "threads", "x"]), VALUES, max_size=3))
def test_bench_settings_of_any_type_are_checked(bench: dict) -> None:
    try:
        settings_ = Plan.from_dict({"models": ["cnn-digits"], "bench": bench}).bench
    except ConfigError:
        return
    assert isinstance(settings_.runs, int) and settings_.runs >= 1
    assert isinstance(settings_.warmup, int) and settings_.warmup >= 0
