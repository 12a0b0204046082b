"""Statistics of a tenant's moderation, per UTC day.

What is already stored is counted where it lies: jobs (:mod:`bastion.jobs.tables`),
review items and people's decisions (:mod:`bastion.review.tables`), alerts and stopped
streams (:mod:`bastion.live.tables`). What is not — images of the synchronous API and
frames of live streams, with the decision the policy took — is counted in memory as it
happens (:mod:`~bastion.stats.counter`, one increment per item in
:class:`~bastion.pipeline.moderation.Moderation`) and added to the ``daily_counts``
table every few seconds (:mod:`~bastion.stats.flush`, :mod:`~bastion.stats.tables`).
:mod:`~bastion.stats.service` computes a report over a period from all of these,
:mod:`~bastion.stats.report` is its shape, :mod:`~bastion.stats.export` its CSV and
:mod:`~bastion.stats.charts` lays out the portal's charts.
"""
