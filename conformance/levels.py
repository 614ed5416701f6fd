"""Conformance levels (smoke / standard / thorough): Hypothesis budgets, sampling of slow
checks, and the seed policy."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LEVEL", "LEVELS", "Profile", "in_ci"]

#: level -> (max_examples, stateful_step_count, checkpoints resumed in a fresh process).
#: None samples every checkpoint. Budgets trade run time for the chance of finding a rare
#: failing input; smoke is for the suite's own tests and quick local loops.
LEVELS: dict[str, tuple[int, int, int | None]] = {
    "smoke": (10, 10, 1),
    "standard": (50, 30, 3),
    "thorough": (500, 100, None),
}
DEFAULT_LEVEL = "standard"


def in_ci() -> bool:
    """True when the environment says this is a CI run (``CI`` set to a true-ish value)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Profile:
    """Budgets and randomness for one conformance run.

    In CI (``CI=true``) Hypothesis is derandomized unless an explicit seed is given, so a
    CI verdict is reproducible; elsewhere a fresh seed is drawn per run and reported with
    every failure (``--conformance-seed`` replays it).
    """

    level: str
    max_examples: int
    step_count: int
    subprocess_samples: int | None
    seed: int | None
    derandomize: bool

    @classmethod
    def for_level(cls, level: str | None = None, *, seed: int | None = None) -> Profile:
        level = level or DEFAULT_LEVEL
        if level not in LEVELS:
            raise ValueError(f"conformance level must be one of {sorted(LEVELS)}; got {level!r}")
        examples, steps, samples = LEVELS[level]
        derandomize = seed is None and in_ci()
        if seed is None and not derandomize:
            seed = random.SystemRandom().randrange(2**32)
        return cls(level, examples, steps, samples, seed, derandomize)

    def hypothesis_settings(self) -> Any:
        """Hypothesis settings for this profile: budgets, no deadline, no example
        database (runs stay hermetic; the seed in the report replays a failure). Smoke
        skips shrinking — it answers yes/no fast; standard and thorough report minimal
        failing examples."""
        from hypothesis import HealthCheck, Phase, settings

        phases = [Phase.explicit, Phase.reuse, Phase.generate]
        if self.level != "smoke":
            phases += [Phase.target, Phase.shrink, Phase.explain]
        return settings(
            phases=phases,
            max_examples=self.max_examples,
            stateful_step_count=self.step_count,
            deadline=None,
            derandomize=self.derandomize,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        )

    def apply_seed(self, test: Any) -> Any:
        """Seed a Hypothesis test or state machine with this profile's seed."""
        if self.seed is None:
            return test
        from hypothesis import seed

        return seed(self.seed)(test)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "max_examples": self.max_examples,
            "stateful_step_count": self.step_count,
            "subprocess_samples": self.subprocess_samples,
            "seed": self.seed,
            "derandomize": self.derandomize,
        }
