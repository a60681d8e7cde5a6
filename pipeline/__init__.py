"""Orchestration: configuration, stages, the run loop and the ``hftbot`` command."""
