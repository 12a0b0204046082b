"""Amazon Rekognition compatibility: the AWS JSON 1.1 protocol on ``POST /`` signed with
Signature Version 4, so a client of Rekognition (boto3, the AWS CLI, the AWS SDKs) moderates
with Bastion by changing only its ``endpoint_url``.

- :mod:`bastion.aws.call` — what every operation receives and the error it raises.
- :mod:`bastion.aws.config` — settings ``aws``: limits, buckets for ``S3Object`` inputs.
- :mod:`bastion.aws.credentials` — access key ids and secrets issued per tenant
  (:mod:`bastion.aws.tables`; ``bastion aws-keys``: :mod:`bastion.aws.commands`).
- :mod:`bastion.aws.sigv4` — Signature Version 4 verified over the exact request.
- :mod:`bastion.aws.protocol` — the ``POST /`` route: target, body, errors, request id.
- :mod:`bastion.aws.taxonomy` — Bastion labels as Rekognition's moderation taxonomy.
- :mod:`bastion.aws.images` — DetectModerationLabels, DetectLabels, DetectText, DetectFaces.
- :mod:`bastion.aws.video` — Start/Get ContentModeration and LabelDetection as jobs.
- :mod:`bastion.aws.s3` — ``S3Object`` inputs read from mapped folders or an S3 store.
"""
