"""The result cache: identical (program, ground truth, settings, reward version) is scored once.

Keys come from :func:`worker.scoring.cache_key`. Two implementations of one small async
interface: :class:`MemoryCache` (an LRU in the API process, the default) and
:class:`RedisCache` (shared by every API replica when the farm runs on Celery). Only
program outcomes are cached, never ``infra_error``: a worker failure must be retried.
A cache that cannot be reached is a miss, never an error.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Protocol

import redis
import redis.asyncio as aioredis

from llm3d.schemas import ExecStatus, RewardResult

__all__ = ["MemoryCache", "RedisCache", "ResultCache", "cacheable"]

logger = logging.getLogger(__name__)


def cacheable(result: RewardResult) -> bool:
    """Whether a result may be reused: anything the program caused, not an infra fault."""
    return result.status is not ExecStatus.INFRA_ERROR


class ResultCache(Protocol):
    """What the reward service needs of a cache."""

    async def get_many(self, keys: Sequence[str]) -> list[RewardResult | None]: ...

    async def put_many(self, entries: Mapping[str, RewardResult]) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """A thread-safe LRU of at most ``maxsize`` results (``0`` disables caching)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, RewardResult] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[RewardResult | None]:
        out: list[RewardResult | None] = []
        with self._lock:
            for key in keys:
                hit = self._data.get(key)
                if hit is not None:
                    self._data.move_to_end(key)
                out.append(hit)
        return out

    async def put_many(self, entries: Mapping[str, RewardResult]) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            for key, result in entries.items():
                self._data[key] = result
                self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    async def close(self) -> None:
        return None


class RedisCache:
    """Results as JSON under ``<namespace>:result:<key>`` with a time to live."""

    def __init__(self, url: str, *, ttl_s: int, namespace: str = "llm3d") -> None:
        self.prefix = f"{namespace}:result:"
        self.ttl_s = ttl_s
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)

    async def get_many(self, keys: Sequence[str]) -> list[RewardResult | None]:
        if not keys:
            return []
        try:
            raw = await self._redis.mget([self.prefix + k for k in keys])
        except (redis.RedisError, OSError) as exc:
            logger.warning("result cache unreachable, scoring everything: %s", exc)
            return [None] * len(keys)
        return [RewardResult.model_validate_json(v) if v is not None else None for v in raw]

    async def put_many(self, entries: Mapping[str, RewardResult]) -> None:
        if not entries:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, result in entries.items():
                pipe.set(self.prefix + key, result.model_dump_json(), ex=self.ttl_s)
            await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            logger.warning("could not store %d results in the cache: %s", len(entries), exc)

    async def close(self) -> None:
        await self._redis.aclose()
