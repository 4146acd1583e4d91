"""edgesmith: take trained Keras models to the edge and measure what each step costs and saves.

The top-level package is TF-free: importing it (or ``edgesmith.runtime``) never imports
TensorFlow. The TensorFlow side lives in ``edgesmith.zoo``, ``edgesmith.compress`` and
``edgesmith.convert`` and is imported lazily.
"""

__version__ = "0.1.0"
