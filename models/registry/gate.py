"""The promotion gate: ``@challenger`` becomes ``@champion`` only if it wins out-of-sample.

The comparison is on the same rows whenever possible: the challenger's walk-forward
predictions for bars the champion never saw (after the champion's ``data_end``) against
the champion's own predictions there (the champion loaded through its alias and fed
features built with its own recipe). When there are no such bars (the same data
retrained) the two versions' stored walk-forward figures are compared, and the decision
says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from config import Settings
from models.champion import CHALLENGER, CHAMPION, load_champion
from models.registry.aliases import client_for, version_by_alias
from models.scoring import HIGHER_IS_BETTER, score
from pipelines import lake
from pipelines.features.recipe import FeatureSpec
from pipelines.lake.tables import FEATURES, PREDICTIONS

MIN_UNSEEN_ROWS = 200
History = pd.DataFrame | Callable[[FeatureSpec, pd.Timestamp], pd.DataFrame]


@dataclass(frozen=True)
class Decision:
    """What the gate decided, on which basis, with both scores."""

    promote: bool
    reason: str
    basis: str  # "no champion", "unseen rows", "stored walk-forward", "same version", "different dataset", "none"
    metric: str
    candidate_version: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    rows: int = 0

    def as_tags(self) -> dict[str, str]:
        return {f"gate_{k}": str(v) for k, v in asdict(self).items()}

    def metadata(self) -> dict:
        """The decision as plain values (Dagster metadata, logs)."""
        return {"promote": self.promote, "reason": self.reason, "basis": self.basis, "metric": self.metric,
                "challenger_version": self.candidate_version, "challenger_score": self.candidate_score,
                "champion_version": self.champion_version or "none", "champion_score": self.champion_score,
                "rows_compared": self.rows}


def _improvement(candidate: float, champion: float, metric: str) -> float:
    return candidate - champion if HIGHER_IS_BETTER[metric] else champion - candidate


def _score_rows(frame: pd.DataFrame, metric: str) -> float:
    s = score(frame["ts"], frame["p_up"].to_numpy(), frame["direction"].to_numpy(), frame["fwd_return"].to_numpy(),
              frame["expected_return"].to_numpy())
    return float(getattr(s, metric))


def _unseen(oos: pd.DataFrame, data_end: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """Labelled rows the champion never learned from: after its ``data_end`` and after the next
    ``horizon - 1`` timestamps too, whose labels overlap the returns its last labels covered."""
    ts = pd.to_datetime(oos["ts"])
    after = np.sort(ts[ts > data_end].unique())
    if len(after) < horizon:
        return oos.iloc[0:0]
    first = after[horizon - 1]
    return oos[ts >= first].dropna(subset=["direction"]).reset_index(drop=True)


def compare_with_champion(settings: Settings, candidate_version: str, oos: pd.DataFrame | None = None,
                          history: History | None = None) -> Decision:
    """Decide whether ``candidate_version`` replaces the current champion.

    Args:
        oos: the candidate family's walk-forward predictions (symbol, ts, p_up,
            expected_return, direction, fwd_return); needed for the unseen-rows comparison.
        history: feature rows the champion scores those rows from (symbol, ts and its
            features, with the bars before them its windows need), or a function of the
            champion's recipe and ``data_end`` that reads them.
    """
    client, name = client_for(settings)
    promo = settings.model.promotion
    metric = promo.metric
    candidate = client.get_model_version(name, candidate_version)
    cand_stored = float(candidate.tags[f"oos_{metric}"])
    champion = version_by_alias(client, name, CHAMPION)
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
    if oos is not None and history is not None:
        unseen = _unseen(oos, champ_end, settings.model.label_horizon)
        if len(unseen) >= MIN_UNSEEN_ROWS:
            champ = load_champion(settings)
            rows = history(champ.spec, champ_end) if callable(history) else history
            if set(champ.spec.names) <= set(rows.columns):
                # both scored on exactly the same rows: those the champion could score
                both = unseen.merge(champ.predict(rows[["symbol", "ts", *champ.spec.names]]), on=["symbol", "ts"],
                                    suffixes=("", "_champion"))
                champ_rows = both.drop(columns=["p_up", "expected_return"]).rename(
                    columns={"p_up_champion": "p_up", "expected_return_champion": "expected_return"})
                unseen = both
                champ_score, cand_score = _score_rows(champ_rows, metric), _score_rows(both, metric)
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


def feature_history(spark: SparkSession, settings: Settings) -> Callable[[FeatureSpec, pd.Timestamp], pd.DataFrame]:
    """Reads, for a champion's recipe, only the feature rows it needs: every row after its
    ``data_end`` and, per symbol, the ``sequence_length - 1`` rows before (its window)."""

    def read(spec: FeatureSpec, data_end: pd.Timestamp) -> pd.DataFrame:
        table = lake.read(spark, FEATURES.path(settings))
        columns = [c for c in ["symbol", "ts", *spec.names] if c in table.columns]
        naive = data_end.tz_convert("UTC").tz_localize(None) if data_end.tzinfo else data_end  # the session is UTC
        end = F.lit(naive.to_pydatetime()).cast("timestamp")
        after = table.where(F.col("ts") > end).select(*columns)
        before = lake.newest_per_symbol(table.where(F.col("ts") <= end), spec.sequence_length - 1).select(*columns)
        return after.unionByName(before).toPandas()

    return read


def evaluate_challenger(spark: SparkSession, settings: Settings) -> Decision:
    """Gate the current ``@challenger``: its walk-forward predictions (the gold predictions
    table) against ``@champion``, and record the decision on the challenger's tags."""
    client, name = client_for(settings)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        return Decision(False, "no @challenger to evaluate", "none", settings.model.promotion.metric, "", None)
    oos = (lake.read(spark, PREDICTIONS.path(settings))
           .where(F.col("model") == challenger.tags["family"]).toPandas())
    decision = compare_with_champion(settings, challenger.version, oos, feature_history(spark, settings))
    record_decision(settings, decision)
    return decision


def record_decision(settings: Settings, decision: Decision) -> None:
    """Write the gate's decision onto the candidate version's tags (shown by ``status``)."""
    client, name = client_for(settings)
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, decision.candidate_version, key, value)
