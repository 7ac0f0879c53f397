"""Errors that end a worker: the CLI prints one line for them, never a traceback.

>>> try:
...     raise FatalError("checkpoint directory /x: no space left on device")
... except FatalError as exc:
...     print(exc.exit_code, exc)
1 checkpoint directory /x: no space left on device
"""

from __future__ import annotations


class FatalError(RuntimeError):
    """The worker cannot go on safely (storage, source position, a failing sink).

    It ends with one clear message and exit status ``exit_code`` (1: a restart may
    help, so systemd and Kubernetes restart it), and never with a checkpoint past
    the last event whose effect is in the state.
    """

    exit_code = 1


class BrokerUnreachableError(FatalError):
    """The Kafka broker stayed unreachable at start-up for ``source.connect_timeout_seconds``.

    Its own exit status (3) tells a supervisor that nothing is wrong with the config or the
    state: the broker was not there in time.

    >>> BrokerUnreachableError("broker away").exit_code
    3
    """

    exit_code = 3
