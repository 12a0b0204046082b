"""De-duplication of analysis results: the same bytes under the same policy and model
versions are analysed once, and near-duplicate images may reuse a stored result.

The modules are kept apart so that :mod:`bastion.config` can import the settings model
without pulling in the engine: ``config`` (settings), ``models`` (tables), ``pdqindex``
(multi-index hashing of PDQ bands), ``fingerprint`` (what a stored result depends on),
``store`` (the database side), ``reuse`` (adapting a near-duplicate's result) and
``service`` (:class:`~bastion.dedup.service.Dedup`, the stored level of moderation).
"""
