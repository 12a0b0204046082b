"""Tenant heads: small classifiers trained on the embeddings Bastion already computes.

- :mod:`~bastion.training.config` — the settings of a run;
- :mod:`~bastion.training.data` — sample checks, the time split, the training-set hash;
- :mod:`~bastion.training.head` — fitting the calibrated head and choosing its threshold;
- :mod:`~bastion.training.onnx_export` — the head as one ONNX graph (skl2onnx);
- :mod:`~bastion.training.inference` — running an exported head with onnxruntime alone,
  and its cost per image;
- :mod:`~bastion.training.evaluate` — the head against the baseline on held-out samples;
- :mod:`~bastion.training.learning` — the learning curve;
- :mod:`~bastion.training.run` — split, train, export, check and evaluate in one call;
- :mod:`~bastion.training.charts` — the report's pictures.

Nothing here touches the database or the registry: it takes arrays and gives back a
head, its ONNX bytes and a report. The package imports nothing itself, so
``bastion.training.inference`` loads without scikit-learn.
"""
