"""PruningPlan: plain, JSON-serialisable, replayable description of what to remove."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsearch.errors import UserError

__all__ = ["PruningPlan", "PlanError"]

SCHEMA = 1


class PlanError(UserError):
    """A plan that cannot be applied: unknown group, zero or too small width, inconsistent indices."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PruningPlan:
    """What to keep, per group, of one source model.

    Attributes:
        model: registry name of the source configuration (``hwsearch models``).
        checkpoint_sha256: SHA-256 of the source checkpoint file ('' for random weights).
        criterion: importance criterion that ranked the units (``l2``, ``l1``, ``taylor``, ``random``).
        keep: group name -> either the number of units kept (resolved to indices by ``criterion`` when
            the plan is applied) or the sorted tuple of kept unit indices. Groups not named keep all.
        model_kwargs: constructor overrides used to build the source model.
        seed: seed of the ``random`` criterion.
        token_score: the rule that scores tokens where the plan prunes tokens (``search_spaces.tokens``
            ``TOKEN_SCORES``; written to JSON only when not the default ``activity``).
        schema: format version.

    Applying a plan whose ``keep`` holds indices to the same checkpoint always gives the same weights.
    """

    model: str
    keep: Mapping[str, int | tuple[int, ...]] = field(default_factory=dict)
    checkpoint_sha256: str = ""
    criterion: str = "l2"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    token_score: str = "activity"
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        norm: dict[str, int | tuple[int, ...]] = {}
        for name, value in self.keep.items():
            if isinstance(value, bool):  # not a count; iterating it raised this TypeError before
                raise TypeError("'bool' object is not iterable")
            if isinstance(value, int):
                norm[name] = int(value)
            else:
                norm[name] = tuple(sorted(int(i) for i in value))
        object.__setattr__(self, "keep", dict(sorted(norm.items())))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))

    @property
    def resolved(self) -> bool:
        """True when every group names exact indices (no counts left to rank)."""
        return all(isinstance(v, tuple) for v in self.keep.values())

    def counts(self) -> dict[str, int]:
        """Group -> number of units kept, for the groups this plan names.

        For reports. A cost model needs to know *which* blocks or branches a depth group keeps: give it
        the plan itself (``AnalyticCostModel().cost(plan)``), resolved to indices when it prunes depth.
        """
        return {k: v if isinstance(v, int) else len(v) for k, v in self.keep.items()}

    def to_dict(self) -> dict[str, Any]:
        extra = {} if self.token_score == "activity" else {"token_score": self.token_score}
        return {
            **extra,
            "schema": self.schema,
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "criterion": self.criterion,
            "seed": self.seed,
            "model_kwargs": dict(self.model_kwargs),
            "keep": {k: v if isinstance(v, int) else list(v) for k, v in self.keep.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningPlan:
        if not isinstance(data, Mapping):
            raise PlanError(f"a plan is a JSON object with keys model and keep (group -> count or indices), "
                            f"not a {type(data).__name__}; write one like {{\"model\": \"...\", \"keep\": {{}}}}")
        raw_schema = data.get("schema", SCHEMA)
        if isinstance(raw_schema, bool) or not isinstance(raw_schema, int):
            raise PlanError(f"plan schema must be a whole number (this hwsearch writes {SCHEMA}), got {raw_schema!r}")
        schema = raw_schema
        if not isinstance(data.get("keep", {}), Mapping):
            raise PlanError("plan `keep` must be an object: group -> kept count or list of kept indices")
        for name, value in dict(data.get("keep", {})).items():
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value))
            if not ok:
                raise PlanError(f"plan keeps {value!r} for group '{name}'; give a count or a list of kept indices")
        if schema > SCHEMA:
            raise PlanError(f"plan schema {schema} is newer than this hwsearch understands ({SCHEMA}); upgrade hwsearch")
        try:
            keep = {k: v if isinstance(v, int) else tuple(v) for k, v in dict(data.get("keep", {})).items()}
            return cls(
                model=str(data["model"]), keep=keep, checkpoint_sha256=str(data.get("checkpoint_sha256", "")),
                criterion=str(data.get("criterion", "l2")), model_kwargs=dict(data.get("model_kwargs", {})),
                seed=int(data.get("seed", 0)), token_score=str(data.get("token_score", "activity")), schema=schema,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"malformed plan: {e}; expected keys model, keep (group -> count or indices)") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise PlanError(f"plan is not valid JSON: {e}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PruningPlan:
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan file not found: {path}; pass --plan PATH to a plan.json")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise PlanError(f"cannot read plan {path} ({type(e).__name__}); pass a plan.json written by hwsearch") from None
        try:
            return cls.from_json(text)
        except PlanError as e:
            raise PlanError(f"{path}: {e}") from None

    def digest(self) -> str:
        """Stable hash of the plan (cache key for evaluations)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
