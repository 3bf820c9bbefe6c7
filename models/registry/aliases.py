"""Alias operations on the registered model: who is ``@champion`` / ``@challenger``, promotion by
hand or by the gate, roll-back, and the history kept in a registered-model tag."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from config import Settings
from models.champion import CHALLENGER, CHAMPION
from models.tracking import configure_mlflow

HISTORY_TAG = "champion_history"


def client_for(settings: Settings) -> tuple[MlflowClient, str]:
    """A client pointed at the configured server, and the registered model's name."""
    configure_mlflow(settings)
    return MlflowClient(), settings.platform.mlflow.registered_model


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``models:/<name>@<alias>``, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def alias_version(settings: Settings, alias: str) -> ModelVersion | None:
    """The model version behind ``models:/<name>@<alias>``, or None."""
    return version_by_alias(*client_for(settings), alias)


def _history(client: MlflowClient, name: str) -> list[dict]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def promote(settings: Settings, version: str | int, reason: str, _rollback: bool = False) -> dict:
    """Point ``@champion`` at ``version`` (dropping ``@challenger`` if it was that version); the
    previous champion is remembered for :func:`rollback`."""
    client, name = client_for(settings)
    version = str(client.get_model_version(name, str(version)).version)  # raises if it does not exist
    previous = version_by_alias(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None and challenger.version == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    entry = {"version": version, "previous": previous.version if previous else None, "reason": reason,
             "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rollback": _rollback}
    history = (_history(client, name) + [entry])[-50:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, version, "promoted_at", entry["at"])
    return entry


def rollback(settings: Settings, reason: str = "rollback") -> dict:
    """Give ``@champion`` back to the version the current champion replaced when it was promoted
    (repeated roll-backs walk further back; a roll-back is never itself undone by one)."""
    client, name = client_for(settings)
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None:
        raise ValueError(f"{name} has no @champion to roll back")
    for entry in reversed(_history(client, name)):
        if entry["version"] == champion.version and not entry.get("rollback"):
            if entry["previous"]:
                return promote(settings, entry["previous"], f"{reason} (from v{champion.version})", _rollback=True)
            break
    raise ValueError(f"{name}@champion (v{champion.version}) has no earlier champion recorded")


def _gate(tags: dict) -> dict:
    """The gate's last decision on a version, as ``status`` shows it."""
    if "gate_reason" not in tags:
        return {}
    return {"gate": {"promote": tags.get("gate_promote"), "reason": tags["gate_reason"],
                     "p_value": tags.get("gate_p_value"), "level": tags.get("gate_level"),
                     "rows": tags.get("gate_rows")}}


def status(settings: Settings) -> dict:
    """Current champion and challenger with their stored out-of-sample figures and the gate's
    last decision on the challenger."""
    client, name = client_for(settings)
    metric = settings.model.promotion.metric
    out: dict = {"model": name}
    for alias in (CHAMPION, CHALLENGER):
        v = version_by_alias(client, name, alias)
        out[alias] = None if v is None else {"version": v.version, "family": v.tags.get("family"),
                                             f"oos_{metric}": v.tags.get(f"oos_{metric}"),
                                             "data_end": v.tags.get("data_end"),
                                             **_gate(v.tags)}
    return out
