"""Computing the sensitivity table once per (checkpoint, eval split, rate grid) and reusing it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hwsearch.errors import UserError
from hwsearch.results import Result
from hwsearch.runners import Runner

__all__ = ["ensure_sensitivity", "sensitivity_meta", "SENSITIVITY_FILE"]

log = logging.getLogger(__name__)
SENSITIVITY_FILE = "sensitivity.json"


def sensitivity_meta(setup: Any) -> dict[str, Any]:
    """The identity of a sensitivity table: what makes two tables interchangeable."""
    space = setup.space
    return {"model": space.model, "checkpoint_sha256": space.checkpoint_sha256,
            "eval_split": setup.study.data.eval_split, "eval_samples": sum(len(y) for _, y in setup.spec.batches),
            "rates": [r for r in space.grid if r > 0],
            "variables": space.names(), "criterion": space.criterion}


def ensure_sensitivity(setup: Any, runner: Runner, *, file: str | Path | None = None, resume: bool = True,
                       progress: bool = True) -> Any:
    """The sensitivity table of ``setup``: loaded from ``file`` or the run dir when it matches, else computed.

    The profile evaluations are stored like any other (study ``profile`` of the run's storage), so an
    interrupted profiling resumes, and the table is saved as ``sensitivity.json`` (+ CSV and PNG).
    """
    from hwsearch.driver import run_strategy
    from hwsearch.sensitivity import SensitivityTable
    from hwsearch.strategies._profile import ProfileAll

    meta = sensitivity_meta(setup)
    candidates = [Path(file)] if file else [setup.run_dir / SENSITIVITY_FILE]
    for path in candidates:
        if path.is_file():
            table = SensitivityTable.load(path)
            if table.matches(meta):
                log.info("reusing sensitivity table %s", path)
                return table
            if file:
                raise UserError(f"sensitivity table {path} was made for another checkpoint, split or rate grid; "
                                "drop --sensitivity to recompute it")
    results, interrupted = run_strategy(setup, ProfileAll(), runner, study_name="profile", resume=True,
                                        progress=progress)
    if interrupted:
        raise KeyboardInterrupt
    ok: list[Result] = list(results)
    table = SensitivityTable.from_results(setup.space, ok, float(setup.baseline.accuracy), meta,
                                         baseline_costs=dict(setup.baseline.costs))
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    table.save(setup.run_dir / SENSITIVITY_FILE)
    table.to_wide_frame().to_csv(setup.run_dir / "sensitivity.csv")
    table.to_long_frame().to_csv(setup.run_dir / "sensitivity_long.csv", index=False)
    table.plot(setup.run_dir / "sensitivity.png")
    return table
