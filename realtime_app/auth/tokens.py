"""JSON Web Tokens: issued with the configured key, verified against the configured rules.

Verification accepts only the configured algorithms (never "none"; HMAC and public-key
families are never mixed, so a public key cannot be replayed as an HMAC secret), requires
`exp`, checks `aud` and `iss` when configured, and tolerates a small clock skew.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from realtime_app.config import Settings, demo_jwt_secret
from realtime_app.data.principal import Principal
from realtime_app.data.resources import ROLES
from realtime_app.errors import TokenExpired, Unauthorized

ACCESS, REFRESH = "access", "refresh"


class TokenService:
    """Issues and verifies JWTs with the keys and rules from Settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.algorithms = settings.algorithms
        self.signing_algorithm = self.algorithms[0]
        self.signing_key: Any
        self.verification_key: Any
        if settings.uses_public_key:
            self.verification_key = Path(settings.jwt_public_key_file).read_bytes()
            self.signing_key = Path(settings.jwt_private_key_file).read_bytes() if settings.jwt_private_key_file else None
        else:
            secret = settings.jwt_secret or demo_jwt_secret(settings.data_dir)
            self.signing_key = self.verification_key = secret

    @property
    def can_issue(self) -> bool:
        return self.signing_key is not None

    def issue(self, user: str, tenant: str, roles: list[str], *, use: str = ACCESS, ttl_s: int | None = None,
              epoch: int | None = None, family: str | None = None, token_id: str | None = None) -> str:
        """A signed token; `epoch` and `family` tie it to its stored user and its login session."""
        if not self.can_issue:
            raise Unauthorized("this server only verifies tokens; it has no private key to issue them")
        issued = int(time.time())
        lifetime = ttl_s if ttl_s is not None else (
            self.settings.access_token_ttl_s if use == ACCESS else self.settings.refresh_token_ttl_s
        )
        claims: dict[str, Any] = {
            "sub": user, "tenant": tenant, "roles": roles, "iat": issued, "exp": issued + lifetime,
            "jti": token_id or uuid.uuid4().hex, "token_use": use,
        }
        if epoch is not None:
            claims["epoch"] = epoch
        if family is not None:
            claims["fam"] = family
        if self.settings.jwt_audience:
            claims["aud"] = self.settings.jwt_audience
        if self.settings.jwt_issuer:
            claims["iss"] = self.settings.jwt_issuer
        return jwt.encode(claims, self.signing_key, algorithm=self.signing_algorithm)

    def decode(self, token: str, use: str = ACCESS) -> dict[str, Any]:
        """Verified claims of a token meant for `use`; Unauthorized names what is wrong."""
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise Unauthorized("missing or oversized token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.verification_key,
                algorithms=self.algorithms,
                audience=self.settings.jwt_audience or None,
                issuer=self.settings.jwt_issuer or None,
                leeway=self.settings.jwt_leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": bool(self.settings.jwt_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired; log in again or refresh it") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token comes from another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized(f"the token's algorithm is not accepted (accepted: {', '.join(self.algorithms)})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:  # also InvalidKeyError: a header naming an accepted algorithm of another key type
            raise Unauthorized(f"invalid token: {exc}") from None
        token_use = claims.get("token_use", ACCESS)
        if token_use != use:
            raise Unauthorized(f"a {token_use} token cannot be used as a {use} token")
        return claims

    def principal(self, token: str) -> Principal:
        claims = self.decode(token, ACCESS)
        tenant = claims.get("tenant")
        roles = claims.get("roles")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthorized("the token has no 'tenant' claim")
        if not isinstance(roles, list) or not any(role in ROLES for role in roles):
            raise Unauthorized(f"the token's 'roles' claim names none of {', '.join(ROLES)}")
        epoch, family, issued_at = claims.get("epoch"), claims.get("fam"), claims.get("iat")
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
            raise Unauthorized("the token's 'epoch' claim is not an integer")
        if family is not None and not isinstance(family, str):
            raise Unauthorized("the token's 'fam' claim is not a string")
        return Principal(str(claims["sub"]), tenant, frozenset(r for r in roles if r in ROLES), float(claims["exp"]),
                         epoch=epoch, family=family, issued_at=float(issued_at) if isinstance(issued_at, (int, float)) else None)
