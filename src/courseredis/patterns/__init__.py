"""The seven Redis patterns, each with a sync and an asyncio API over one implementation."""

from courseredis.patterns.blacklist import AsyncBlacklist, Blacklist
from courseredis.patterns.cache import AsyncCourseCache, CacheOptions, CacheStatus, CourseCache
from courseredis.patterns.idempotency import AsyncIdempotency, ClaimStatus, Idempotency
from courseredis.patterns.lock import AsyncLock, Lock, LockLost, LockNotAcquired, LockOptions
from courseredis.patterns.ratelimit import (
    Algorithm,
    AsyncRateLimiter,
    Decision,
    Policy,
    RateLimiter,
)
from courseredis.patterns.refresh import AsyncRefreshTokens, RefreshTokens, RotationStatus
from courseredis.patterns.sessions import AsyncSessions, Sessions

__all__ = [
    "Algorithm",
    "AsyncBlacklist",
    "AsyncCourseCache",
    "AsyncIdempotency",
    "AsyncLock",
    "AsyncRateLimiter",
    "AsyncRefreshTokens",
    "AsyncSessions",
    "Blacklist",
    "CacheOptions",
    "CacheStatus",
    "ClaimStatus",
    "CourseCache",
    "Decision",
    "Idempotency",
    "Lock",
    "LockLost",
    "LockNotAcquired",
    "LockOptions",
    "Policy",
    "RateLimiter",
    "RefreshTokens",
    "RotationStatus",
    "Sessions",
]
