"""The model registry: tenants' heads as MLflow runs and registered model versions, and
how every moderating process serves them.

- :mod:`~bastion.registry.config`: where the MLflow store is, the name scheme
  (``<prefix>.<tenant>.<category-slug>``), how often aliases are checked;
- :mod:`~bastion.registry.store`: :class:`~bastion.registry.store.ModelRegistry`, the
  MLflow client calls (log a head, list versions, move the ``champion`` and
  ``challenger`` aliases, fetch a version checked against its sha256);
- :mod:`~bastion.registry.heads`: the ONNX contract of a head, a head loaded and checked,
  and the set of heads a process serves;
- :mod:`~bastion.registry.watcher`: follows the aliases and swaps heads in and out
  without a restart;
- :mod:`~bastion.registry.shadow`: challengers' disagreements with champions, and
  :mod:`~bastion.registry.shadow_store` writing them to the database (summed over
  processes and restarts);
- :mod:`~bastion.registry.checks`: a candidate head against the champion (or the
  baseline) on its frozen held-out samples;
- :mod:`~bastion.registry.promotion`: promotion (refused unless the checks pass or it is
  forced with a reason), rollback and challengers, each audited
  (:mod:`~bastion.registry.tables`), and the tenant's high-severity categories;
- :mod:`~bastion.registry.commands`: `bastion models`.

The analyzer that runs the heads is :mod:`bastion.analyzers.tenant_head`. Nothing here
imports ``mlflow`` until the registry is first used.
"""
