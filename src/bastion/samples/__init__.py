"""A tenant's labelled samples: media, the right labels and the embeddings to train on.

Samples come from three places: moderators' decisions and the platform's corrections
(a decision that kept its item's media, ``media_kept``, becomes a sample when the
worker collects it: :mod:`~bastion.samples.collector`), and folders of labelled images
(``bastion samples import``: :mod:`~bastion.samples.importer`, the layout in
:mod:`~bastion.samples.folder`). Each keeps its media in the content-addressed job media
store, its labels and where they came from (:mod:`~bastion.samples.tables`), and the
embedding of each model that embedded it (:mod:`~bastion.samples.embedding`).
:mod:`~bastion.samples.service` lists, filters, deletes and hands out training arrays;
:mod:`~bastion.samples.exporter` writes a tenant's samples in the import layout.
"""
