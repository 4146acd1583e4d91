"""The TF-free runtime: benchmarks .tflite and .onnx files on the device that runs them.

Imports only NumPy, the runtimes (ai-edge-litert, tflite-runtime, onnxruntime) and the
TF-free core of ``edgesmith`` (records, errors).
"""
