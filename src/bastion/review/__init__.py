"""The review queue: items a person must look at, and what people decided about them.

Bastion decides ``review`` when its models and policy are not sure enough to allow or
block. Such items land in a queue (:mod:`~bastion.review.tables`), routed by the labels
or rule that sent them there (:mod:`~bastion.review.routing`, settings in
:mod:`~bastion.review.config`); reviewers claim them one at a time under a lease and
decide (:mod:`~bastion.review.service`); every decision is kept as an audit log and sent
as a signed webhook (:mod:`~bastion.review.events`). The REST API and, later, the
moderator portal both work on this one queue.
"""
