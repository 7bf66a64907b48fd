"""A distributed Redis rate limiter: Lua scripts decide with Redis time, policies are shared
through Redis under a version, and stateless FastAPI nodes serve the decisions."""

from __future__ import annotations

from ratelimiter_service.limiter import CoalescingLimiter, Decision, KeyUsage, Limiter
from ratelimiter_service.policies import Algorithm, Policy, PolicyStore

__version__ = "2.0.0"

__all__ = ["Algorithm", "CoalescingLimiter", "Decision", "KeyUsage", "Limiter", "Policy", "PolicyStore"]
