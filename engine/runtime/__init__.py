"""The loop and what it moves: events, shards, joins, checkpoints
(private files are written with :mod:`regretflow.connectors.files`).

Imports point one way (``tests/test_import_layers.py`` holds the layers): the event
contract here (``dead_letters``, ``events``, ``joins``) sits below ``evaluation`` and
``observability.metrics``, which ``shard``, ``loop`` and ``checkpoint`` use; nothing in
``runtime`` imports the command line, the report or the experiments.
"""
