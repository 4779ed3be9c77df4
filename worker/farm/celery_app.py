"""The Celery application of the reward farm: Redis broker and result backend, ``blender`` queue.

Start a worker with ``llm3d worker`` (or ``celery -A worker.farm.celery_app worker -Q blender``).
The settings follow Celery's guidance for long, idempotent, CPU-bound tasks:

- ``acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after it
  finished, so a worker killed mid-task leaves its message to be redelivered to another
  worker: with the Redis transport, ``farm.visibility_timeout_s`` after the worker last
  renewed its lease on it (:mod:`worker.farm.leases`: live workers renew, so only a lost
  worker's tasks come back, within seconds, and a slow task never does);
- ``worker_prefetch_multiplier = 1``: a worker holds at most one task per process;
- ``worker_max_tasks_per_child``: processes are recycled (and their Blender fork server with
  them), bounding any slow leak;
- soft and hard time limits *nested above* the executor's own timeout: the executor kills a
  slow program first (status ``timeout``); the soft limit only fires when the executor itself
  hangs (result ``infra_error``), the hard limit when even that does not return;
- ``worker_consumer``: Celery's consumer with a safe teardown of a lost Redis connection
  (:mod:`worker.farm.consumer`): without it a Redis restart could shut the worker down for good
  ("Unrecoverable error") instead of letting it reconnect.

The module-level :data:`app` is built from the configuration of the environment
(``LLM3D_FARM__REDIS_URL`` ...), which is how ``celery -A`` finds it; creating it opens no
connection.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from llm3d.config import Config, load_config
from worker.farm.leases import LeaseKeeper, lease_interval_s

__all__ = ["SCORE_TASK", "SELECT_TASK", "app", "configure", "make_celery", "task_time_limits"]

logger = logging.getLogger(__name__)

SCORE_TASK = "llm3d.score"
#: Best-of-N: run, render and match one candidate (:func:`worker.selection.select_job`).
SELECT_TASK = "llm3d.select"
HARD_LIMIT_EXTRA_S = 10.0


def task_time_limits(config: Config, timeout_s: float | None = None) -> tuple[float, float]:
    """``(soft, hard)`` time limits of one scoring task.

    A task may run two programs (the reference, once per worker process and ground truth,
    and the candidate), each bounded by ``timeout_s``; the soft limit sits
    ``farm.task_margin_s`` above that, the hard limit a little above the soft one.
    """
    timeout = timeout_s or config.executor.timeout_s
    soft = 2 * timeout + config.farm.task_margin_s
    return soft, soft + HARD_LIMIT_EXTRA_S


def configure(celery: Celery, config: Config) -> Celery:
    """Apply ``config`` (broker, queue, limits, acknowledgement policy) to ``celery``."""
    farm = config.farm
    soft, hard = task_time_limits(config)
    sweep = max(1, int(lease_interval_s(farm.visibility_timeout_s)))
    transport: dict[str, Any] = {
        # Live workers renew their leases every quarter of this (worker.farm.leases), so it
        # bounds how long a lost worker's task waits, not how long a task may run.
        "visibility_timeout": farm.visibility_timeout_s,
        # sweep for messages of lost workers as often as leases are renewed (kombu's
        # default sweep is every 10 s x 10 = 100 s)
        "unacked_restore_interval": sweep,
        "unacked_restore_throttle": 1,
        # a sweeper killed while holding the sweep's lock blocks the others this long
        "unacked_mutex_expire": max(sweep, int(farm.visibility_timeout_s)),
        # the farm's own unacked bookkeeping: farms sharing a Redis database (with other
        # visibility timeouts) must not sweep each other's messages
        "unacked_key": f"{farm.namespace}:unacked",
        "unacked_index_key": f"{farm.namespace}:unacked_index",
        "unacked_mutex_key": f"{farm.namespace}:unacked_mutex",
    }
    celery.conf.update(
        broker_url=farm.redis_url,
        result_backend=farm.redis_url,
        task_default_queue=farm.queue,
        task_routes={SCORE_TASK: {"queue": farm.queue}, SELECT_TASK: {"queue": farm.queue}},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=farm.max_tasks_per_child,
        worker_concurrency=farm.concurrency or None,
        task_soft_time_limit=soft,
        task_time_limit=hard,
        result_expires=config.api.job_ttl_s,
        broker_transport_options=transport,
        result_backend_always_retry=True,
        result_backend_max_retries=30,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # reconnects after a Redis restart instead of dying on kombu's teardown (see there)
        worker_consumer="worker.farm.consumer:Consumer",
        worker_hijack_root_logger=False,
        task_send_sent_event=False,
        worker_send_task_events=False,
    )
    # renews the leases of held tasks (a set: configuring twice adds it once)
    celery.steps["consumer"].add(LeaseKeeper)
    return celery


def make_celery(config: Config | None = None) -> Celery:
    """A Celery app configured from ``config`` (default: :func:`llm3d.config.load_config`)."""
    config = config or load_config()
    return configure(Celery("llm3d", include=["worker.farm.tasks"]), config)


app = make_celery()
