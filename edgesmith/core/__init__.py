"""The TF-free core: the vocabulary every edgesmith package speaks.

Errors (:mod:`~edgesmith.core.errors`), the records that travel between stages
(:mod:`~edgesmith.core.records`), atomic file I/O (:mod:`~edgesmith.core.fileio`),
metrics (:mod:`~edgesmith.core.metrics`), the format/quant tables and shared constants
(:mod:`~edgesmith.core.tables`), small text formatters (:mod:`~edgesmith.core.formatting`),
the progress callback type (:mod:`~edgesmith.core.progress`) and the capture of what native
code writes to stderr (:mod:`~edgesmith.core.native_log`).

It imports nothing else of the project and no TensorFlow, so the runtime can use it on a
board that has neither.
"""
