"""People's accounts: users with roles, their passwords and their sessions.

API keys (:mod:`bastion.store.keys`) are for machines; the moderator portal signs people
in with a username and a password and keeps them signed in with a session. This package
holds that account layer: the tables (:mod:`~bastion.accounts.tables`), password hashing
and policy (:mod:`~bastion.accounts.passwords`), the session token format
(:mod:`~bastion.accounts.tokens`), login rate limiting
(:mod:`~bastion.accounts.ratelimit`), settings (:mod:`~bastion.accounts.config`), errors
(:mod:`~bastion.accounts.errors`) and the service that ties them together
(:mod:`~bastion.accounts.service`).
"""
