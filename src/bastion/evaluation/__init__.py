"""Measuring what Bastion decides today on a labelled folder (``bastion eval DIR``).

- :mod:`~bastion.evaluation.config` — the settings of a measurement (bootstrap);
- :mod:`~bastion.evaluation.folder_eval` — pure computation: per-category and
  decision-level precision, recall and F1 with bootstrap intervals, from what each
  image's labels say and what the policy's result said;
- :mod:`~bastion.evaluation.runner` — reads a folder in the labelled-samples layout
  (:mod:`bastion.samples.folder`) and moderates every image through
  :class:`~bastion.pipeline.moderation.Moderation`;
- :mod:`~bastion.evaluation.commands` — the ``bastion eval`` command.

The package imports nothing itself, so the command line loads the models only when the
command runs.
"""
