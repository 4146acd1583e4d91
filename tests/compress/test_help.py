"""The CLI's recipe help lists every key each step accepts (it is written by hand)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from edgesmith.commands.compress import RECIPE_HELP
from edgesmith.compress.techniques import STEPS


@pytest.mark.parametrize("step", STEPS)
def test_recipe_help_lists_every_key_of_every_step(step):
    block = re.search(rf"^    {step} +(.*?)(?=^    \w|^  \S)", RECIPE_HELP, re.M | re.S)
    assert block, step
    listed = set(re.findall(r"[a-z_]+", block.group(1)))
    keys = {f.name for f in dataclasses.fields(STEPS[step].config)}
    assert keys <= listed, keys - listed
