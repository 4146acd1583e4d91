"""The one place that selects Keras 2 (tf-keras) and imports TensorFlow.

tensorflow-model-optimization 0.8.1 only works with Keras 2, which TensorFlow 2.16+
serves through the ``tf_keras`` package when ``TF_USE_LEGACY_KERAS=1`` is set before
TensorFlow is first imported. Every TensorFlow-side module gets ``tf``, ``keras`` and
``tfmot`` from here, inside the functions that need them, so the CLI and the runtime
stay light.

Example:
    >>> from edgesmith.zoo.tfkeras import keras
    >>> keras().__name__.startswith("tf_keras")
    True
"""

from __future__ import annotations

import os
from types import ModuleType

# Set at import of this module (which imports no TensorFlow) so that any later import
# of tensorflow or tfmot, ours or the user's, sees Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Level 3 also hides C++ "errors" that TF logs for harmless graph attributes; real
# failures still raise Python exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tf() -> ModuleType:
    """Import and return ``tensorflow`` with Keras 2 selected."""
    from edgesmith.core.errors import ConfigError

    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise ConfigError(
            f"TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')!r}",
            expected="TF_USE_LEGACY_KERAS=1 (tensorflow-model-optimization needs Keras 2)",
            fix="unset the variable or set it to 1 before starting Python",
        )
    import sys

    from edgesmith.core.native_log import native_log

    try:
        if "tensorflow" in sys.modules:
            import tensorflow
        else:
            # TensorFlow's C++ start-up lines (absl's pre-init warning, "Could not find
            # cuda drivers") ignore TF_CPP_MIN_LOG_LEVEL; they say nothing a user can act on.
            with native_log():
                import tensorflow
    except ImportError as exc:  # the runtime-only install has no TensorFlow
        raise _missing("tensorflow", exc) from None
    # Retracing and deprecation chatter is not actionable for a user of the CLI.
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def keras() -> ModuleType:
    """Import and return Keras 2 (``tf_keras``)."""
    tf()
    try:
        import tf_keras
    except ImportError as exc:
        raise _missing("tf-keras", exc) from None
    return tf_keras


def tfmot() -> ModuleType:
    """Import and return ``tensorflow_model_optimization`` (bound to Keras 2)."""
    keras()
    try:
        import tensorflow_model_optimization
    except ImportError as exc:
        raise _missing("tensorflow-model-optimization", exc) from None
    return tensorflow_model_optimization


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras().utils.set_random_seed(seed)
    tf().config.experimental.enable_op_determinism()


def _missing(package: str, exc: ImportError) -> Exception:
    from edgesmith.core.errors import EdgesmithError

    return EdgesmithError(
        f"{package} is not installed ({exc})",
        expected="the TensorFlow side of edgesmith",
        fix="install it with: pip install 'edgesmith[full]'",
    )
