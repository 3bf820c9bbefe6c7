"""Promotion by alias: ``@challenger`` becomes ``@champion`` only if it wins out-of-sample.

The comparison is on the same rows whenever possible: the challenger's walk-forward
predictions for bars the champion never saw (after the champion's ``data_end``) against
the champion's own predictions there, loaded through ``models:/<name>@champion``. When
there are no such bars (the same data retrained) the two versions' stored walk-forward
figures on their datasets are compared, and the decision says so.

Manual use::

    python -m models.registry status
    python -m models.registry promote 7 --reason "reviewed"
    python -m models.registry rollback
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from config import Settings, load_settings
from models.panel import Panel
from models.tracking import configure_mlflow
from models.training import CHALLENGER, HIGHER_IS_BETTER
from pipelines.metrics import score

CHAMPION = "champion"
HISTORY_TAG = "champion_history"
MIN_UNSEEN_ROWS = 200


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    basis: str  # "no champion", "unseen rows", "stored walk-forward", "same version", "different dataset"
    metric: str
    candidate_version: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    rows: int = 0

    def as_tags(self) -> dict[str, str]:
        return {f"gate_{k}": str(v) for k, v in asdict(self).items()}


def _alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def alias_version(settings: Settings, alias: str):
    """The model version behind ``models:/<name>@<alias>``, or None."""
    configure_mlflow(settings)
    return _alias(MlflowClient(), settings.platform.mlflow.registered_model, alias)


def _improvement(candidate: float, champion: float, metric: str) -> float:
    return candidate - champion if HIGHER_IS_BETTER[metric] else champion - candidate


def _score_rows(frame: pd.DataFrame, p_up: np.ndarray, expected: np.ndarray, metric: str) -> float:
    s = score(frame["ts"], p_up, frame["direction"].to_numpy(), frame["fwd_return"].to_numpy(), expected)
    return float(getattr(s, metric))


def compare_with_champion(settings: Settings, candidate_version: str, oos: pd.DataFrame | None = None,
                          panel: Panel | None = None) -> Decision:
    """Decide whether ``candidate_version`` replaces the current champion.

    Args:
        oos: the candidate family's walk-forward predictions (symbol, ts, p_up,
            expected_return, direction, fwd_return); needed for the unseen-rows comparison.
        panel: the feature panel those rows come from (history for the champion's windows).
    """
    configure_mlflow(settings)
    client = MlflowClient()
    name = settings.platform.mlflow.registered_model
    promo = settings.model.promotion
    metric = promo.metric
    candidate = client.get_model_version(name, candidate_version)
    cand_stored = float(candidate.tags[f"oos_{metric}"])
    champion = _alias(client, name, CHAMPION)
    if champion is None:
        return Decision(True, "no champion yet", "no champion", metric, candidate_version, cand_stored)
    if champion.version == candidate.version:
        return Decision(False, "candidate is already the champion", "same version", metric, candidate_version,
                        cand_stored, champion.version, cand_stored)
    if champion.tags.get("dataset") != candidate.tags.get("dataset"):
        return Decision(False, f"champion v{champion.version} was trained on dataset {champion.tags.get('dataset')!r}, "
                               f"the candidate on {candidate.tags.get('dataset')!r}: not comparable; promote by hand "
                               "to switch datasets", "different dataset", metric, candidate_version, cand_stored,
                        champion.version, None)
    champ_end = pd.Timestamp(champion.tags.get("data_end", "1970-01-01"))
    if oos is not None and panel is not None:
        unseen = oos[pd.to_datetime(oos["ts"]) > champ_end].dropna(subset=["direction"]).reset_index(drop=True)
        if len(unseen) >= MIN_UNSEEN_ROWS:
            model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
            features = model.unwrap_python_model().features
            if set(features) <= set(panel.frame.columns):
                scored = model.predict(panel.frame[["symbol", "ts", *features]])
                scored = unseen[["symbol", "ts", "direction", "fwd_return"]].merge(scored, on=["symbol", "ts"])
                champ_score = _score_rows(scored, scored["p_up"].to_numpy(), scored["expected_return"].to_numpy(),
                                          metric)
                cand_score = _score_rows(unseen, unseen["p_up"].to_numpy(), unseen["expected_return"].to_numpy(),
                                         metric)
                gain = _improvement(cand_score, champ_score, metric)
                return Decision(gain >= promo.min_improvement,
                                f"{metric} {cand_score:.4f} vs champion {champ_score:.4f} on {len(unseen)} rows "
                                f"after {champ_end.date()} (margin {promo.min_improvement})",
                                "unseen rows", metric, candidate_version, cand_score, champion.version, champ_score,
                                len(unseen))
    champ_stored = float(champion.tags.get(f"oos_{metric}", "nan"))
    gain = _improvement(cand_stored, champ_stored, metric) if np.isfinite(champ_stored) else np.inf
    return Decision(bool(gain >= promo.min_improvement),
                    f"walk-forward {metric} {cand_stored:.4f} vs champion's {champ_stored:.4f} "
                    f"(no unseen rows to compare on; margin {promo.min_improvement})",
                    "stored walk-forward", metric, candidate_version, cand_stored, champion.version, champ_stored)


def evaluate_challenger(spark, settings: Settings) -> Decision:
    """Gate the current ``@challenger``: its walk-forward predictions (the gold predictions
    table) against ``@champion``, and record the decision on the challenger's tags."""
    from pipelines import lake
    from pipelines.research import path

    challenger = alias_version(settings, CHALLENGER)
    if challenger is None:
        return Decision(False, "no @challenger to evaluate", "none", settings.model.promotion.metric, "", None)
    oos = (lake.read(spark, path(settings, "gold", "predictions"))
           .where(f"model = '{challenger.tags['family']}'").toPandas())
    champion = alias_version(settings, CHAMPION)
    panel = None
    if champion is not None and champion.version != challenger.version and not oos.empty:
        from models.training import load_training_data

        panel = load_training_data(spark, settings, pd.Timestamp(oos["ts"].max()).date()).panel
    decision = compare_with_champion(settings, challenger.version, oos, panel)
    record_decision(settings, decision)
    return decision


def record_decision(settings: Settings, decision: Decision) -> None:
    """Write the gate's decision onto the candidate version's tags (the asset check reads them)."""
    configure_mlflow(settings)
    client = MlflowClient()
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(settings.platform.mlflow.registered_model, decision.candidate_version, key, value)


def _history(client: MlflowClient, name: str) -> list[dict]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def promote(settings: Settings, version: str | int, reason: str, _rollback: bool = False) -> dict:
    """Point ``@champion`` at ``version`` (dropping ``@challenger`` if it was that version); the
    previous champion is remembered for :func:`rollback`."""
    configure_mlflow(settings)
    client = MlflowClient()
    name = settings.platform.mlflow.registered_model
    version = str(client.get_model_version(name, str(version)).version)  # raises if it does not exist
    previous = _alias(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = _alias(client, name, CHALLENGER)
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
    configure_mlflow(settings)
    client = MlflowClient()
    name = settings.platform.mlflow.registered_model
    champion = _alias(client, name, CHAMPION)
    if champion is None:
        raise ValueError(f"{name} has no @champion to roll back")
    for entry in reversed(_history(client, name)):
        if entry["version"] == champion.version and not entry.get("rollback"):
            if entry["previous"]:
                return promote(settings, entry["previous"], f"{reason} (from v{champion.version})", _rollback=True)
            break
    raise ValueError(f"{name}@champion (v{champion.version}) has no earlier champion recorded")


def status(settings: Settings) -> dict:
    """Current champion and challenger with their stored out-of-sample figures."""
    configure_mlflow(settings)
    client = MlflowClient()
    name = settings.platform.mlflow.registered_model
    metric = settings.model.promotion.metric
    out = {"model": name}
    for alias in (CHAMPION, CHALLENGER):
        v = _alias(client, name, alias)
        out[alias] = None if v is None else {"version": v.version, "family": v.tags.get("family"),
                                             f"oos_{metric}": v.tags.get(f"oos_{metric}"),
                                             "data_end": v.tags.get("data_end")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.registry", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="show @champion and @challenger")
    p = sub.add_parser("promote", help="make a version @champion")
    p.add_argument("version")
    p.add_argument("--reason", default="manual promotion")
    r = sub.add_parser("rollback", help="give @champion back to the previous champion")
    r.add_argument("--reason", default="manual rollback")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.command == "status":
            result = status(settings)
        elif args.command == "promote":
            result = promote(settings, args.version, args.reason)
        else:
            result = rollback(settings, args.reason)
    except (ValueError, MlflowException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
