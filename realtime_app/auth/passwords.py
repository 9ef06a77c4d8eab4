"""Password hashing and the password policy (OWASP ASVS level 2).

The policy: 12 to 128 characters, any characters, no composition rules, and not guessable.
Guessability is zxcvbn's estimate, which matches the password against its lists of the most
common passwords (30,000 of them), English words, names, keyboard walks, repeats, sequences and
dates, and against the user's own name and tenant; a password it puts below 10^8 guesses (its
score under 3) is refused with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from zxcvbn import zxcvbn

# scrypt at N=2**14, r=8 costs about 16 MiB and tens of milliseconds: slow for guessing, fine for logins.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_LENGTH, MAX_LENGTH = 12, 128
MIN_SCORE = 3
# zxcvbn's work grows fast with length and it refuses more than 72 characters; a password whose
# first 72 are hard to guess is at least as hard as they are.
SCORED_PREFIX = 72


class WeakPassword(ValueError):
    """The password breaks the policy; the message says how."""


def check_policy(password: str, *context: str) -> None:
    """Raise WeakPassword unless `password` meets the policy; `context` (user name, tenant)
    counts as guessable too."""
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"a password must be {MIN_LENGTH} to {MAX_LENGTH} characters long (a few words make a good one)")
    verdict = zxcvbn(password[:SCORED_PREFIX], user_inputs=list(context))
    if verdict["score"] < MIN_SCORE:
        reason = verdict["feedback"]["warning"] or "it is too easy to guess"
        raise WeakPassword(f"this password is too easy to guess: {reason.rstrip('.')}. Choose another, e.g. a few unrelated words")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))
