"""Compression techniques (pruning, QAT, distillation, clustering) for every zoo family.

One module per technique, each exposing one step: a frozen, validated config class and
``run(model, data, config, context=None) -> StepResult`` (the model plus what the step
measured; :mod:`~edgesmith.compress.step`): :mod:`~edgesmith.compress.prune`,
:mod:`~edgesmith.compress.qat`, :mod:`~edgesmith.compress.distill`,
:mod:`~edgesmith.compress.cluster`. :mod:`~edgesmith.compress.techniques` maps step names
to them; :mod:`~edgesmith.compress.recipe` (TF-free) parses recipes through it and
:mod:`~edgesmith.compress.recipe_runner` runs one and writes the output folder. A QAT
model's full-int8 TFLite file comes from the convert package (``edgesmith convert``).

Example:
    >>> from edgesmith.compress.recipe import parse_recipe
    >>> parse_recipe("prune:sparsity=0.8+qat").to_text()
    'prune:sparsity=0.8+qat'
"""

from edgesmith.zoo import tfkeras as _tfkeras  # noqa: F401  (selects Keras 2 before any TF import)
