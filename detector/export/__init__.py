"""Deployable models: ONNX and TorchScript."""
