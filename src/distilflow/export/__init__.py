"""Exported forms of the models: int8, ONNX, the teacher through ONNX Runtime."""
