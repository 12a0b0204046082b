"""How a Bastion process is put together: :mod:`~bastion.process.components` builds every
part from :class:`~bastion.config.Settings` (the one composition root) and
:mod:`~bastion.process.worker` runs a process without the HTTP API (`bastion worker`).
`bastion up` serves the API (:func:`bastion.api.app.create_app`), whose lifespan builds
the same components."""
