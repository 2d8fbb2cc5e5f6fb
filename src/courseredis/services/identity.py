"""Who is calling: the verified access-token claims, for the services behind the gateway.

The upstream services verify the JWT themselves (a signature check, no Redis): a header
set by the gateway could be forged by anything that reaches the service directly.
Revocation, rate limits and session activity are the gateway's job.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path

from courseredis.services.runtime import RuntimeDep
from courseredis.services.tokens import (
    AccessClaims,
    InvalidToken,
    bearer_token,
    decode_access_token,
)

log = logging.getLogger(__name__)

# A course id in a path: an int a key may hold (keys.valid_int_id's range), else 422.
CourseId = Annotated[int, Path(gt=0, le=2**63 - 1, description="course id")]


# The dependencies are `async def`, though they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per request for a few microseconds of work.
async def current_claims(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> AccessClaims:
    try:
        return decode_access_token(
            runtime.settings.verifying_keys(),
            runtime.settings.jwt_issuer,
            bearer_token(authorization),
        )
    except InvalidToken as error:
        log.info("access token refused", extra={"reason": error.reason})
        raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None


ClaimsDep = Annotated[AccessClaims, Depends(current_claims)]


async def require_admin(claims: ClaimsDep) -> AccessClaims:
    if not claims.is_admin:
        raise HTTPException(403, "admin role required")
    return claims


AdminDep = Annotated[AccessClaims, Depends(require_admin)]
