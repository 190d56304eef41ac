"""Deploy: ONNX export of registry versions and the edge runtime.

Modules here that the edge imports need only numpy, onnxruntime and an HTTP client.
"""
