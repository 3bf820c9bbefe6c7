"""The champion on the live path: loaded once, reloaded when ``@champion`` moves.

The stream scores on the driver, once per micro-batch, on the cross-section of the bars that
closed in it (the ranks need every symbol of a bar anyway, and a bar's cross-section is a few
hundred rows). :class:`LiveScorer` asks the registry every ``champion_poll_seconds`` which
version holds the alias and loads a new one without a restart, as long as its feature recipe
is the one the running query's state was sized for; otherwise it keeps serving the old
version and says that a restart is needed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pandas as pd
from config import Settings
from models.champion import CHAMPION, Champion, load_champion
from models.registry.aliases import alias_version
from pipelines.features.recipe import FeatureSpec

log = logging.getLogger(__name__)


def champion_version(settings: Settings) -> str | None:
    """The version ``@champion`` names now, or None when no version holds it."""
    version = alias_version(settings, CHAMPION)
    return str(version.version) if version is not None else None


@dataclass
class LiveScorer:
    """The serving champion, its recipe and the last ``sequence_length - 1`` ranked feature rows
    per symbol (the history a sequence model reads before the newest row)."""

    settings: Settings
    champion: Champion | None = None
    spec: FeatureSpec | None = None
    note: str = ""
    recent: pd.DataFrame = field(default_factory=pd.DataFrame)
    _checked: float = 0.0

    @classmethod
    def start(cls, settings: Settings) -> "LiveScorer":
        """Load the champion (if any); without one the stream lands bars and features with the
        configured recipe and scores nothing until a version is promoted and the job restarted."""
        scorer = cls(settings)
        if champion_version(settings) is None:
            scorer.spec = FeatureSpec.from_settings(settings)
            scorer.note = (f"no version of {settings.platform.mlflow.registered_model} holds @{CHAMPION}: "
                           "bars and features only (run `make demo` to train and promote one)")
            log.warning(scorer.note)
        else:
            scorer.champion = load_champion(settings)
            scorer.spec = scorer.champion.spec
        scorer._checked = time.monotonic()
        return scorer

    def poll(self) -> None:
        """Reload when ``@champion`` moved (at most every ``champion_poll_seconds``)."""
        if time.monotonic() - self._checked < self.settings.kafka.stream.champion_poll_seconds:
            return
        self._checked = time.monotonic()
        version = champion_version(self.settings)
        if version is None or (self.champion is not None and version == self.champion.version):
            return
        candidate = load_champion(self.settings)
        if candidate.spec.windows != self.spec.windows:
            self.note = (f"@{CHAMPION} moved to version {version}, whose feature windows "
                         f"{list(candidate.spec.windows)} differ from the running state's: restart the stream to serve it")
            log.warning(self.note)
            return
        log.info("@%s moved: serving version %s (%s) instead of %s", CHAMPION, version, candidate.family,
                 self.champion.version if self.champion else "none")
        self.champion, self.spec, self.note = candidate, candidate.spec, ""

    def score(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Predictions for the newest ranked feature rows ``rows`` (symbol, ts, features).

        Sequence models read each symbol's previous ``sequence_length - 1`` rows from
        :attr:`recent`; a symbol without that much history is not scored. Returns symbol, ts,
        p_up, expected_return.
        """
        if self.champion is None or rows.empty:
            return pd.DataFrame(columns=["symbol", "ts", "p_up", "expected_return"])
        need = self.champion.spec.sequence_length
        names = self.champion.spec.names
        frame = pd.concat([self.recent, rows[["symbol", "ts", *names]]], ignore_index=True) \
            if not self.recent.empty else rows[["symbol", "ts", *names]]
        frame = frame.drop_duplicates(["symbol", "ts"], keep="last").sort_values(["symbol", "ts"])
        depth = frame.groupby("symbol").cumcount() + 1
        wanted = frame.set_index(["symbol", "ts"]).index.isin(rows.set_index(["symbol", "ts"]).index)
        frame = frame.reset_index(drop=True)
        scorable = wanted & (depth.to_numpy() >= need)
        scored = self.champion.predict(frame).loc[scorable].reset_index(drop=True)
        self.recent = frame.groupby("symbol").tail(max(need - 1, 0)).reset_index(drop=True)
        return scored
