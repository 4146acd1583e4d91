"""Size measurements: file bytes, deflate-compressed bytes, parameters and non-zero parameters.

TF-free. ``gzip_bytes`` is measured the way tfmot's pruning and clustering guides do: the
size of the file inside a DEFLATE-compressed zip archive, which is what sparse or clustered
weights save in a download or on flash with compression.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "zeros.bin"
    >>> _ = path.write_bytes(bytes(10_000))
    >>> sizes = file_sizes(path)
    >>> sizes["size_bytes"], sizes["gzip_bytes"] < 1_000
    (10000, True)
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


def file_sizes(path: str | os.PathLike[str]) -> dict[str, int]:
    """``size_bytes`` and ``gzip_bytes`` (zip archive, DEFLATE level 9) of one file."""
    path = Path(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, arcname=path.name)
    return {"size_bytes": path.stat().st_size, "gzip_bytes": len(buffer.getvalue())}


def parameter_counts(model: Any) -> dict[str, Any]:
    """Parameters, non-zero parameters and sparsity of a Keras model's weights."""
    weights = [np.asarray(w) for w in model.get_weights()]
    params = int(sum(w.size for w in weights))
    nonzero = int(sum(np.count_nonzero(w) for w in weights))
    sparsity = 0.0 if params == 0 else round(1.0 - nonzero / params, 6)
    return {"params": params, "nonzero_params": nonzero, "sparsity": sparsity}
