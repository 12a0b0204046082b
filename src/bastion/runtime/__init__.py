"""Model execution: onnxruntime sessions, execution providers and dynamic batching."""
