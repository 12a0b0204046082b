"""Bounded parsing of the documents clients send (JSON bodies, YAML policies and rules).

Every parser here refuses what it cannot bound *before* the expensive work: sizes and
item counts are checked on the raw text, nesting depth while walking, and errors are
:class:`bastion.errors.InputError` subclasses with stable codes, never a traceback.
"""
