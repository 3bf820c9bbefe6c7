"""Who may place orders: records on ``orders`` are signed by the trader or the API desk.

Each signer has its own key (:func:`config.secrets.stored_secret`, generated once in the state
folder, or ``QL_ORDER_KEY_<SIGNER>`` from a deployment's secret store). A signed record carries
``signer`` and ``sig``, the HMAC-SHA256 of its canonical JSON (sorted keys, without ``sig``). The
venue verifies before it looks at anything else an order says, so a record from any other
producer on ``orders`` (a test tool, a stray script, a compromised client that reached the
topic) is rejected with the reason and never fills. Kafka's own ACLs keep other principals off
the topic; the signature is the venue's own check, as a broker checks its clients' sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from config import Settings
from config.secrets import stored_secret

SIGNERS = ("trader", "desk")


def signing_key(settings: Settings, signer: str) -> bytes:
    if signer not in SIGNERS:
        raise ValueError(f"unknown order signer {signer!r} (one of {', '.join(SIGNERS)})")
    return stored_secret(settings, "orders", signer, f"QL_ORDER_KEY_{signer.upper()}").encode()


def _digest(key: bytes, record: dict) -> str:
    body = json.dumps({k: v for k, v in record.items() if k != "sig"}, sort_keys=True, separators=(",", ":"),
                      default=str)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


class Signer:
    """Signs records as ``signer`` (the trader or the desk)."""

    def __init__(self, settings: Settings, signer: str) -> None:
        self.name, self._key = signer, signing_key(settings, signer)

    def sign(self, record: dict) -> dict:
        signed = {**record, "signer": self.name}
        return {**signed, "sig": _digest(self._key, signed)}


class Verifier:
    """The venue's check of a record's signature."""

    def __init__(self, settings: Settings) -> None:
        self._keys = {name: signing_key(settings, name) for name in SIGNERS}

    def problem(self, record: dict) -> str | None:
        """Why ``record`` is not a signed order from the trader or the desk (None: it is)."""
        signer, sig = record.get("signer"), record.get("sig")
        if signer is None or sig is None:
            return "unsigned: only the trader's or the API desk's signed orders are accepted"
        key = self._keys.get(signer) if isinstance(signer, str) else None
        if key is None:
            return f"signer {signer!r} is neither the trader nor the API desk"
        if not isinstance(sig, str) or not hmac.compare_digest(sig, _digest(key, record)):
            return f"bad signature for signer {signer!r}: the record was altered or not signed with its key"
        return None
