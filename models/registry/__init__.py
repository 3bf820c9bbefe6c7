"""The model registry: alias operations (:mod:`.aliases`), the promotion gate (:mod:`.gate`)
and the command line (``python -m models.registry``)."""

from models.champion import CHALLENGER, CHAMPION
from models.registry.aliases import alias_version, promote, rollback, status
from models.registry.gate import Decision, compare_with_champion, evaluate_challenger, record_decision

__all__ = ["CHALLENGER", "CHAMPION", "Decision", "alias_version", "compare_with_champion", "evaluate_challenger",
           "promote", "record_decision", "rollback", "status"]
