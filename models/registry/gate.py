"""The promotion gate: a version becomes ``@champion`` only if it beats the champion and the
baselines out-of-sample by more than chance.

Every family of the challenger's training run is judged on the same rows against each
opponent: the current ``@champion`` (its own predictions, from features built with its own
recipe) and the baselines of ``promotion.baselines`` (always-up and momentum-sign). A
momentum-sign candidate is judged against the others; always-up, which predicts one direction
and ranks nothing, is the no-skill reference and can never pass (it cannot beat itself). Each
comparison is a one-sided paired test (:func:`models.scoring.paired_test`, errors clustered by
timestamp). A family passes when every
p-value is below ``promotion.level / k``, ``k`` the number of families in the run: picking the
best of ``k`` on the rows that then judge it would otherwise promote noise, and with this
(Bonferroni) correction the chance that any of ``k`` equally good families passes stays below
the level. Of the families that pass, the best by ``promotion.metric`` on those rows becomes
``@challenger`` and is promoted; when none passes, nothing is and the decision says which test
stopped the closest one.

The rows: with a champion, the run's labelled walk-forward rows the champion never learned from
(after its ``data_end`` and its last label's horizon) and can score; without one, all of the
run's labelled walk-forward rows. With fewer than ``promotion.min_rows`` the champion stays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from config import Settings
from models.champion import CHALLENGER, CHAMPION, load_champion
from models.registry.aliases import client_for, version_by_alias
from models.scoring import HIGHER_IS_BETTER, PairedTest, paired_test
from pipelines import lake
from pipelines.features.recipe import FeatureSpec
from pipelines.lake.tables import FEATURES, PREDICTIONS

History = pd.DataFrame | Callable[[FeatureSpec, pd.Timestamp], pd.DataFrame]
KEY = ["symbol", "ts"]
NO_SKILL = "always_up"   # the one-direction reference: never promoted


@dataclass(frozen=True)
class Decision:
    """What the gate decided, on which rows, with the tests behind it."""

    promote: bool
    reason: str
    basis: str  # "no champion", "unseen rows", "same version", "different dataset", "too few rows", "none"
    metric: str
    candidate_version: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    rows: int = 0
    p_value: float | None = None      # the largest p-value of the chosen (or closest) family's tests
    level: float | None = None        # the per-test level: promotion.level / families
    tests: tuple[dict, ...] = field(default_factory=tuple)

    def as_tags(self) -> dict[str, str]:
        tags = {f"gate_{k}": str(v) for k, v in asdict(self).items() if k != "tests"}
        tags["gate_tests"] = json.dumps(list(self.tests))
        return tags

    def metadata(self) -> dict:
        """The decision as plain values (Dagster metadata, logs)."""
        return {"promote": self.promote, "reason": self.reason, "basis": self.basis, "metric": self.metric,
                "challenger_version": self.candidate_version, "challenger_score": self.candidate_score,
                "champion_version": self.champion_version or "none", "champion_score": self.champion_score,
                "rows_compared": self.rows, "p_value": self.p_value, "level": self.level,
                "tests": json.dumps(list(self.tests))}


def _unseen(oos: pd.DataFrame, data_end: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """Labelled rows the champion never learned from: after its ``data_end`` and after the next
    ``horizon - 1`` timestamps too (``horizon``: the label's span in bars), whose labels overlap
    the returns its last labels covered."""
    ts = pd.to_datetime(oos["ts"])
    after = np.sort(ts[ts > data_end].unique())
    if len(after) < horizon:
        return oos.iloc[0:0]
    first = after[horizon - 1]
    return oos[ts >= first].dropna(subset=["direction"]).reset_index(drop=True)


@dataclass(frozen=True)
class Verdict:
    """One family against every opponent."""

    family: str
    version: str
    score: float
    tests: tuple[PairedTest, ...]
    level: float

    @property
    def passed(self) -> bool:
        return bool(self.tests) and all(t.p_value < self.level for t in self.tests)

    @property
    def worst(self) -> PairedTest | None:
        return max(self.tests, key=lambda t: t.p_value) if self.tests else None


def judge(rows: pd.DataFrame, families: dict[str, str], opponents: dict[str, pd.DataFrame], metric: str,
          level: float, baselines: tuple[str, ...]) -> list[Verdict]:
    """Test every family on ``rows`` against every opponent at ``level / len(families)``.

    Args:
        rows: symbol, ts, direction, fwd_return, and ``p_up_<family>`` / ``er_<family>`` per family.
        families: family -> registered version.
        opponents: name -> frame with symbol, ts, p_up, expected_return on the same keys.
        baselines: opponent names that are families too: not judged against themselves, except
            :data:`NO_SKILL`, which thereby never passes.
    """
    per_test = level / max(1, len(families))
    aligned = {name: rows[KEY].merge(other, on=KEY, how="left") for name, other in opponents.items()}
    direction, fwd_return = rows["direction"].to_numpy(), rows["fwd_return"].to_numpy()
    verdicts = []
    for family, version in families.items():
        mine = (rows[f"p_up_{family}"].to_numpy(), rows[f"er_{family}"].to_numpy())
        tests = []
        for name, theirs in aligned.items():
            if name == family and name in baselines and name != NO_SKILL:
                continue   # momentum_sign is judged against the others; always-up can never beat itself
            tests.append(paired_test(rows["ts"], direction, fwd_return, mine,
                                     (theirs["p_up"].to_numpy(), theirs["expected_return"].to_numpy()), metric, name))
        own = tests[0].challenger_score if tests else float("nan")   # the same rows for every family
        verdicts.append(Verdict(family, version, own, tuple(tests), per_test))
    return verdicts


def _choose(verdicts: list[Verdict], metric: str) -> Verdict | None:
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    passing = [v for v in verdicts if v.passed and np.isfinite(v.score)]
    return max(passing, key=lambda v: sign * v.score) if passing else None


def _closest(verdicts: list[Verdict]) -> Verdict:
    return min(verdicts, key=lambda v: v.worst.p_value if v.worst else 1.0)


def _describe(v: Verdict) -> str:
    return ", ".join(f"{t.opponent} (gain {t.gain:+.4f}, p={t.p_value:.2g})" for t in v.tests)


def compare_with_champion(settings: Settings, candidate_version: str, oos: pd.DataFrame | None = None,
                          history: History | None = None) -> Decision:
    """Decide which version of the challenger's run, if any, replaces the current champion.

    Args:
        oos: the run's walk-forward predictions (symbol, ts, model, p_up, expected_return,
            direction, fwd_return), every family's.
        history: feature rows the champion scores those rows from (symbol, ts and its
            features, with the bars before them its windows need), or a function of the
            champion's recipe and ``data_end`` that reads them.
    """
    client, name = client_for(settings)
    promo = settings.model.promotion
    metric = promo.metric
    candidate = client.get_model_version(name, candidate_version)
    cand_stored = float(candidate.tags.get(f"oos_{metric}", "nan"))
    families = json.loads(candidate.tags.get("run_versions", "{}")) or {candidate.tags.get("family", "?"): candidate_version}
    champion = version_by_alias(client, name, CHAMPION)

    def decline(reason: str, basis: str, rows: int = 0) -> Decision:
        return Decision(False, reason, basis, metric, candidate_version, cand_stored,
                        champion.version if champion else None, None, rows)

    if champion is not None and champion.version in families.values():
        return decline(f"champion v{champion.version} comes from this training run already", "same version")
    if champion is not None and champion.tags.get("dataset") != candidate.tags.get("dataset"):
        return decline(f"champion v{champion.version} was trained on dataset {champion.tags.get('dataset')!r}, "
                       f"the candidate on {candidate.tags.get('dataset')!r}: not comparable; promote by hand "
                       "to switch datasets", "different dataset")
    if (oos is None or oos.empty) and champion is not None:
        return decline(f"no out-of-sample rows after champion v{champion.version}'s data_end "
                       f"{champion.tags.get('data_end', '?')}: nothing new to judge on", "too few rows")
    if oos is None or oos.empty:
        return decline("no out-of-sample predictions to judge on", "none")

    labelled = oos.dropna(subset=["direction"])
    keys = labelled[KEY].drop_duplicates()
    opponents: dict[str, pd.DataFrame] = {}
    basis = "no champion"
    if champion is not None:
        basis = "unseen rows"
        champ_end = pd.Timestamp(champion.tags.get("data_end", "1970-01-01"))
        keys = _unseen(labelled, champ_end, settings.model.label_span)[KEY].drop_duplicates()
        if history is None:
            return decline("no feature history to score the champion on", basis)
        champ = load_champion(settings)
        rows = history(champ.spec, champ_end) if callable(history) else history
        if not set(champ.spec.names) <= set(rows.columns):
            return decline("the feature table lacks the champion's features", basis)
        champ_pred = champ.predict(rows[[*KEY, *champ.spec.names]])[[*KEY, "p_up", "expected_return"]]
        keys = keys.merge(champ_pred[KEY], on=KEY)
        opponents[f"champion v{champion.version}"] = champ_pred
    for baseline in promo.baselines:
        preds = labelled[labelled["model"] == baseline]
        if preds.empty:
            return decline(f"no {baseline} predictions to judge against: keep it in model.families", basis)
        opponents[baseline] = preds[[*KEY, "p_up", "expected_return"]]

    # one row per key with every family's prediction side by side
    wide = keys
    for family in families:
        part = labelled.loc[labelled["model"] == family, [*KEY, "p_up", "expected_return", "direction", "fwd_return"]]
        part = part.rename(columns={"p_up": f"p_up_{family}", "expected_return": f"er_{family}"})
        if "direction" in wide.columns:
            part = part.drop(columns=["direction", "fwd_return"])
        wide = wide.merge(part, on=KEY)
    wide = wide.sort_values(KEY).reset_index(drop=True)
    if len(wide) < promo.min_rows:
        return decline(f"only {len(wide)} rows to judge on (promotion.min_rows {promo.min_rows})", "too few rows",
                       len(wide))

    verdicts = judge(wide, families, opponents, metric, promo.level, tuple(promo.baselines))
    chosen = _choose(verdicts, metric)
    shown = chosen or _closest(verdicts)
    champ_test = next((t for t in shown.tests if t.opponent.startswith("champion")), None)
    level = shown.level
    where = f"{len(wide)} rows, level {promo.level}/{len(families)} = {level:.4f}"
    if chosen is not None:
        others = [v.family for v in verdicts if v.passed and v is not chosen]
        reason = (f"{chosen.family} v{chosen.version} beats {_describe(chosen)} on {where}"
                  + (f"; also passing: {', '.join(others)}" if others else ""))
    else:
        reason = f"no family beats every opponent on {where}; closest: {shown.family}: {_describe(shown)}"
    # a rejection is recorded on the @challenger the run proposed (its tests name the closest family)
    return Decision(chosen is not None, reason, basis, metric, chosen.version if chosen else candidate_version,
                    shown.score, champion.version if champion else None,
                    champ_test.opponent_score if champ_test else None, len(wide),
                    shown.worst.p_value if shown.worst else None, level,
                    tuple({"family": shown.family, **t.as_dict()} for t in shown.tests))


def _timestamp(stamp: pd.Timestamp):
    """A Spark timestamp literal for ``stamp`` (the session runs in UTC)."""
    naive = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
    return F.lit(naive.to_pydatetime()).cast("timestamp")


def feature_history(spark: SparkSession, settings: Settings) -> Callable[[FeatureSpec, pd.Timestamp], pd.DataFrame]:
    """Reads, for a champion's recipe, only the feature rows it needs: every row after its
    ``data_end`` and, per symbol, the ``sequence_length - 1`` rows before (its window)."""

    def read(spec: FeatureSpec, data_end: pd.Timestamp) -> pd.DataFrame:
        table = lake.read(spark, FEATURES.path(settings))
        columns = [c for c in ["symbol", "ts", *spec.names] if c in table.columns]
        end = _timestamp(data_end)
        after = table.where(F.col("ts") > end).select(*columns)
        before = lake.newest_per_symbol(table.where(F.col("ts") <= end), spec.sequence_length - 1).select(*columns)
        return after.unionByName(before).toPandas()

    return read


def evaluate_challenger(spark: SparkSession, settings: Settings) -> Decision:
    """Gate the current ``@challenger``'s training run: every family's walk-forward predictions
    (the gold predictions table) against ``@champion`` and the baselines. A passing family other
    than the challenger becomes ``@challenger``; the decision goes on that version's tags."""
    client, name = client_for(settings)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        return Decision(False, "no @challenger to evaluate", "none", settings.model.promotion.metric, "", None)
    table = lake.read(spark, PREDICTIONS.path(settings))
    if challenger.tags.get("parent_run_id"):
        table = table.where(F.col("run_id") == challenger.tags["parent_run_id"])
    champion = version_by_alias(client, name, CHAMPION)
    if champion is not None and "data_end" in champion.tags:   # only rows the champion never saw are judged
        table = table.where(F.col("ts") > _timestamp(pd.Timestamp(champion.tags["data_end"])))
    oos = table.select(*KEY, "model", "p_up", "expected_return", "direction", "fwd_return").toPandas()
    decision = compare_with_champion(settings, challenger.version, oos, feature_history(spark, settings))
    if decision.promote and decision.candidate_version != challenger.version:
        client.set_registered_model_alias(name, CHALLENGER, decision.candidate_version)
    record_decision(settings, decision)
    return decision


def record_decision(settings: Settings, decision: Decision) -> None:
    """Write the gate's decision onto the judged version's tags (shown by ``status``)."""
    if not decision.candidate_version:
        return
    client, name = client_for(settings)
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, decision.candidate_version, key, value[:5000])
