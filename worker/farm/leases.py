"""Leases on the tasks a worker holds, so that a lost worker's tasks come back in seconds.

With the Redis transport, kombu keeps every message a worker took but has not acknowledged
(``acks_late``) in an ``unacked`` hash, with the time it was taken in the ``unacked_index``
sorted set; every consuming worker sweeps that index every ``unacked_restore_interval`` and
puts back in its queue any message older than ``visibility_timeout``. That timeout has to
choose between two evils: short, and a long task still running is delivered again; long
(it was 900 s here), and a task held by a killed worker waits that long before anyone runs
it again: one crashed worker made a GRPO step wait fifteen minutes.

:class:`LeaseKeeper`, a step of the worker's consumer, removes the dilemma: every quarter of
the visibility timeout it moves the index entries of the messages this worker still holds
to *now* (``ZADD XX``: an entry that was acknowledged or restored meanwhile is not brought
back). A live worker's tasks, however slow, are never older than a quarter of the timeout;
a worker that stops renewing (killed, stopped, its host or network gone) has its tasks put
back by kombu's own sweep at most ``visibility_timeout`` after its last renewal. The
renewal runs on the consumer's event loop, as acknowledgements do: a worker whose consumer
is stuck is, for this purpose, lost. A task that is restored while its worker still runs it
(a worker stopped and then continued) runs twice; the tasks are idempotent and the API keeps
the first result.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker import state

__all__ = ["LeaseKeeper", "held_delivery_tags", "lease_interval_s", "renew_leases"]

logger = logging.getLogger(__name__)


def lease_interval_s(visibility_timeout_s: float) -> float:
    """How often a worker renews its leases: a quarter of the visibility timeout."""
    return max(0.5, visibility_timeout_s / 4)


def held_delivery_tags() -> list[str]:
    """The delivery tags of the messages this worker process holds (reserved or running)."""
    tags: set[str] = set()
    for request in [*state.reserved_requests, *state.active_requests]:
        message = getattr(request, "message", None)
        tag = getattr(message, "delivery_tag", None)
        if tag is not None:
            tags.add(str(tag))
    return sorted(tags)


def renew_leases(channel: Any, tags: list[str], now: float | None = None) -> int:
    """Move the ``unacked_index`` entries of ``tags`` to ``now``; how many were renewed.

    Only entries still present are touched (``XX``): a message acknowledged or already put
    back is left alone.
    """
    if not tags:
        return 0
    stamp = time.time() if now is None else now
    with channel.conn_or_acquire() as client:
        changed = client.zadd(
            channel.unacked_index_key, dict.fromkeys(tags, stamp), xx=True, ch=True
        )
    return int(changed or 0)


class LeaseKeeper(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: renew the leases of held messages every quarter of the visibility timeout.

    Installed by :func:`worker.farm.celery_app.configure`; does nothing with a transport that
    has no ``unacked_index`` (not Redis).
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.tref: Any = None

    def start(self, c: Any) -> None:
        options = c.app.conf.broker_transport_options or {}
        visibility = float(options.get("visibility_timeout", 3600))
        self.tref = c.timer.call_repeatedly(
            lease_interval_s(visibility), self.renew, (c,), priority=10
        )

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def renew(self, c: Any) -> None:
        consumer = getattr(c, "task_consumer", None)
        channel = getattr(consumer, "channel", None)
        if channel is None or not hasattr(channel, "unacked_index_key"):
            return
        tags = held_delivery_tags()
        try:
            renew_leases(channel, tags)
        except Exception as exc:  # a timer must not raise; kombu's sweep is the backstop
            logger.warning("could not renew the leases of %d held tasks: %r", len(tags), exc)
