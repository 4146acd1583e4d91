"""Property-based tests of the one-line recipe parser: any text gives a recipe or a ConfigError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesmith.compress.recipe import Recipe, parse_recipe
from edgesmith.core.errors import ConfigError

# Text made of the recipe grammar's own pieces finds the parser's corners; plain text, the rest.
PIECES = st.sampled_from(
    ["prune", "qat", "cluster", "distill", ":", "=", ",", "+", "sparsity", "epochs", "0.5",
     "2:4", "structure", "exclude", "^[a-z]+$", "student", "lstm-digits", "1", "-3", " ", "x"]
)  # fmt: skip
TEXTS = st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=12).map("".join))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(TEXTS)
def test_any_text_parses_to_a_round_tripping_recipe_or_a_config_error(text: str) -> None:
    try:
        recipe = parse_recipe(text)
    except ConfigError as exc:
        assert str(exc)  # a message that says what was wrong
        return
    assert parse_recipe(recipe.to_text()) == recipe
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
