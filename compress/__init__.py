"""Compression techniques (pruning, QAT, distillation, clustering) for every zoo family.

One module per technique, each with a frozen, validated config and
``apply(model, data, config) -> model`` (``run`` returns the model with what the step
measured): :mod:`~edgesmith.compress.prune`, :mod:`~edgesmith.compress.qat`,
:mod:`~edgesmith.compress.distill`, :mod:`~edgesmith.compress.cluster`.
:mod:`~edgesmith.compress.recipe` (TF-free) parses recipes,
:mod:`~edgesmith.compress.recipe_runner` runs one and writes the output folder, and
:mod:`~edgesmith.compress.int8` is the full-int8 TFLite check of QAT models.

Example:
    >>> from edgesmith.compress.recipe import parse_recipe
    >>> parse_recipe("prune:sparsity=0.8+qat").to_text()
    'prune:sparsity=0.8+qat'
"""

from edgesmith.zoo import tfkeras as _tfkeras  # noqa: F401  (selects Keras 2 before any TF import)
