"""The loop and what it moves: events, shards, joins, checkpoints
(private files are written with :mod:`regretflow.connectors.files`).

Imports point one way: ``runtime`` uses ``tasks``, ``evaluation`` and
``observability.metrics``; nothing below it imports ``runtime``.
"""
