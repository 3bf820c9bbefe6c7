"""What every configuration model shares: frozen, and unknown keys are errors."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Frozen(BaseModel):
    """A frozen settings model that rejects unknown keys (a typo fails at start-up, naming the key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
