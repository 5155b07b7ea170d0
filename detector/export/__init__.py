"""Deployable models: ONNX, TorchScript and OpenVINO (float32, fp16, INT8), and their runtimes."""
