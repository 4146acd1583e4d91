"""The model zoo: data sets, model builders, training and the model store.

This is the base of the TensorFlow side. Importing it selects Keras 2 but imports no
TensorFlow; the functions that need TensorFlow import it when called.
"""

from edgesmith.zoo import tfkeras as _tfkeras  # noqa: F401  (selects Keras 2 before any TF import)
