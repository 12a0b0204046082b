"""Support code for ML models that analyzers run: YOLO decoding, detection outputs, user ONNX
files, and the tool that builds EfficientNet-Lite0 as ONNX. No analyzer lives here."""
