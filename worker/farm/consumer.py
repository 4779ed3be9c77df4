"""The worker's Celery consumer: Celery's own, with the teardown of a lost Redis connection fixed.

Why (celery 5.7.0 / kombu 5.7.0, Redis broker): when the consumer loses its broker connection,
:meth:`celery.worker.consumer.Consumer.on_connection_error_after_connected` tears the connection
down with ``connection.collect()`` (errors ignored) and then ``connection.close()`` (only
connection errors ignored), then reconnects. With the Redis transport that teardown can raise
an ``AttributeError`` instead, which Celery does not treat as recoverable: the worker logs
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`` and
shuts down for good (and ``llm3d worker`` used to exit 0 then: nothing restarted it locally,
and the job waited on a queue that nobody consumed). It happens when the loss is first noticed
on another socket than the task channel's ``BRPOP`` (the remote-control channel's pub/sub
socket, an ack, a timer) while that ``BRPOP`` is still outstanding and a task is unacknowledged
(``acks_late``): a race, which load made likelier. The teardown then goes:

1. ``collect()`` closes the task channel: kombu's ``Channel.close()`` first reads the outstanding
   ``BRPOP`` reply, which raises a connection error *before* the channel is marked closed (kombu
   only catches ``Empty`` there); the error is ignored and the channel stays open;
2. still in ``collect()``, the transport closes its channels, the last opened first, and stops
   at the first that raises: the remote-control channel, whose close deletes its auto-delete
   queue in Redis. The task channel is not closed there either, and ``collect()`` then detaches
   the transport (``transport.client = None``);
3. ``close()`` closes the task channel again: this time it gets as far as restoring its
   unacknowledged message, which needs a new Redis client, whose parameters come from the
   detached ``transport.client``: ``AttributeError``, and the consumer dies.

:class:`Consumer` closes the lost connection's channels itself, before Celery's teardown and
while the transport is still attached: a close that failed part way (step 1) is retried once,
and then completes, because the failed read already dropped the outstanding ``BRPOP``. Celery's
``collect()``/``close()`` then find the task channel closed and the reconnection proceeds.
Nothing changes for the messages: closing tries to put the unacknowledged ones back in the
queue; if Redis is down it cannot, and they stay in Redis's ``unacked`` set, from where the
visibility timeout restores them (the tasks are idempotent, ``acks_late`` is kept).

:func:`worker.farm.celery_app.configure` installs it with the ``worker_consumer`` setting.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.utils.threads import bound_open_broker_sockets
from celery.worker.consumer import Consumer as CeleryConsumer

__all__ = ["TEARDOWN_SOCKET_TIMEOUT_S", "Consumer", "close_lost_channels"]

logger = logging.getLogger(__name__)

TEARDOWN_SOCKET_TIMEOUT_S = 5.0
"""Longest wait on one already open broker socket while closing (Celery uses the same bound):
a peer that went silent without closing its socket must not hang the reconnection."""


def close_lost_channels(connection: Any, socket_timeout: float = TEARDOWN_SOCKET_TIMEOUT_S) -> int:
    """Close the channels of a kombu ``connection`` whose broker was lost (module doc).

    Each channel is closed while the transport is still attached to the connection; one whose
    close failed part way (still not ``closed``) is closed once more. Connection and channel
    errors are swallowed: a channel that still cannot be closed (the remote-control one, whose
    close needs Redis) is left to Celery's teardown, as before. Reads on sockets that are
    already open wait at most ``socket_timeout`` seconds (a silent peer cannot hang this).

    Returns:
        How many channels are closed afterwards (for logs and tests).
    """
    bound_open_broker_sockets(connection, socket_timeout)
    transport = getattr(connection, "_transport", None)  # the property would create one
    channels = list(getattr(transport, "channels", None) or ())
    errors: tuple[type[BaseException], ...] = (
        tuple(getattr(connection, "connection_errors", ()))
        + tuple(getattr(connection, "channel_errors", ()))
        + (OSError,)
    )
    closed = 0
    for channel in channels:
        for _attempt in range(2):
            if getattr(channel, "closed", True):
                break
            try:
                channel.close()
            except errors as exc:
                logger.debug("closing channel %s of the lost connection: %r", channel, exc)
        closed += bool(getattr(channel, "closed", True))
    return closed


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose teardown of a lost connection cannot kill it (module doc)."""

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        if self.connection is not None:
            try:
                close_lost_channels(self.connection)
            except Exception:  # a teardown path: Celery's own cleanup follows regardless
                logger.exception("closing the channels of the lost broker connection failed")
        super().on_connection_error_after_connected(exc)
