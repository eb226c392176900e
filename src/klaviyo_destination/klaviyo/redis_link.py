"""The connection to Redis for the shared rate limits, its one script, and whether it answers.

The script keeps, per account and endpoint class, three keys (``shared_limits.py`` says what
each holds) and changes them in one step: Redis runs a script alone, so two processes cannot
both take the last slot. Its time is Redis's own (``TIME``), so the processes' clocks need
not agree. Each call is bounded by ``REDIS_TIMEOUT``; redis-py's own retries are off, so a
failed round trip turns the limits local at once (:meth:`RedisLink.lost`, logged once per
change) and a probe tries Redis again every :data:`PROBE_INTERVAL` until it answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from ..redact import redact

logger = logging.getLogger(__name__)

#: Seconds between tries to reach Redis again while the limits are local.
PROBE_INTERVAL: Final = 1.0
#: Errors that turn the limits local: Redis's own, the socket's, and our timeout.
LOST: Final = (RedisError, OSError, TimeoutError)

# KEYS: in flight, answered, hold. ARGV: slots wanted, burst, steady, burst period, steady
# period, lease, poll (a wait when every slot is in flight), hold asked for (0: none), all in
# ms; id prefix, first id number, how many answered ids follow, the ids of the slots answered
# since the last call, then those given back unused (no request went out on them).
# Returns the slots granted, the wait for the next one (ms) and the slots left per window.
_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local f, d, h = KEYS[1], KEYS[2], KEYS[3]
local wanted, burst, steady = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local bp, sp, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local poll, hold = tonumber(ARGV[7]), tonumber(ARGV[8])
local answers = tonumber(ARGV[11])
for i = 12, 11 + answers do
  if redis.call('ZREM', f, ARGV[i]) == 1 then redis.call('ZADD', d, now, ARGV[i]) end
end
for i = 12 + answers, #ARGV do redis.call('ZREM', f, ARGV[i]) end
local lapsed = redis.call('ZRANGEBYSCORE', f, '-inf', now, 'WITHSCORES')
for i = 1, #lapsed, 2 do redis.call('ZADD', d, lapsed[i + 1], lapsed[i]) end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', f, '-inf', now) end
redis.call('ZREMRANGEBYSCORE', d, '-inf', now - sp)
local held = tonumber(redis.call('GET', h) or '0')
if hold > 0 and now + hold > held then
  held = now + hold
  redis.call('SET', h, tostring(held), 'PX', math.ceil(hold))
end
local flying = redis.call('ZCARD', f)
local recent = redis.call('ZCOUNT', d, '(' .. (now - bp), '+inf')
local answered = redis.call('ZCARD', d)
local granted = 0
if held <= now then
  granted = math.max(0, math.min(wanted, burst - recent - flying, steady - answered - flying))
  for i = 0, granted - 1 do
    redis.call('ZADD', f, now + lease, ARGV[9] .. (tonumber(ARGV[10]) + i))
  end
  flying = flying + granted
end
local wait = 0
if granted < wanted then
  if held > now then
    wait = held - now
  end
  if recent + flying >= burst then
    if recent == 0 then
      wait = math.max(wait, poll)
    else
      local first = redis.call('ZRANGEBYSCORE', d, '(' .. (now - bp), '+inf', 'WITHSCORES',
        'LIMIT', 0, 1)
      wait = math.max(wait, tonumber(first[2]) + bp - now)
    end
  end
  if answered + flying >= steady then
    if answered == 0 then
      wait = math.max(wait, poll)
    else
      local first = redis.call('ZRANGE', d, 0, 0, 'WITHSCORES')
      wait = math.max(wait, tonumber(first[2]) + sp - now)
    end
  end
end
redis.call('PEXPIRE', f, lease + sp)
redis.call('PEXPIRE', d, sp + bp)
return {granted, math.ceil(wait), burst - recent - flying, steady - answered - flying}
"""


class RedisLink:
    """The connection to Redis, the script, and whether the limits are shared right now."""

    def __init__(self, url: SecretStr, timeout: float) -> None:
        self._url = url
        self.timeout = timeout
        # No retries of redis-py's own: a round trip that fails turns the limits local at once.
        self._redis = Redis.from_url(
            url.get_secret_value(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._sha = ""
        #: ``True`` while Redis answers; ``None`` before the first try.
        self._shared: bool | None = None
        self._probe: asyncio.Task[None] | None = None
        #: script calls sent (``klaviyo_rate_limit_redis_calls`` in /metrics)
        self.calls = 0

    @property
    def shared(self) -> bool:
        return bool(self._shared)

    async def start(self) -> None:
        """Reach Redis once (bounded by the timeout); local limits until it answers."""
        try:
            await self._load()
        except LOST as exc:
            self.lost(exc)
        else:
            self._found()

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        await self._redis.aclose()

    async def _load(self) -> None:
        async with asyncio.timeout(self.timeout):
            self._sha = await self._redis.script_load(_SCRIPT)

    async def run(self, keys: tuple[str, str, str], args: list[int | float | str]) -> list[int]:
        """One call of the script, bounded by the timeout; raises one of :data:`LOST`."""
        self.calls += 1
        async with asyncio.timeout(self.timeout):
            try:
                answer = await self._redis.evalsha(self._sha, 3, *keys, *args)
            except NoScriptError:  # Redis restarted: its scripts went with it
                self._sha = await self._redis.script_load(_SCRIPT)
                answer = await self._redis.evalsha(self._sha, 3, *keys, *args)
        return [int(n) for n in answer]

    def _found(self) -> None:
        if not self._shared:
            logger.info("rate limits shared through Redis")
        self._shared = True

    def lost(self, exc: BaseException) -> None:
        """Limits local from now on (logged once), and Redis probed until it answers."""
        if self._shared is not False:
            reason = redact(f"{type(exc).__name__}: {exc}", self._url)
            logger.warning("rate limits local: Redis unreachable (%s)", reason)
        self._shared = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._reach())

    async def _reach(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self._load()
            except LOST:
                continue
            self._found()
            return
