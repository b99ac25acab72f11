"""The IPA optimiser: an integer program built purely from data, an injected solver (CBC or
HiGHS through PuLP), and an exhaustive reference solver."""

from ipa.optimizer.brute_force import brute_force
from ipa.optimizer.model import COMBINATION_LIMIT, Model, build_model, pas_formulation
from ipa.optimizer.problem import (Evaluation, Option, Problem, StageOptions, check_rate, check_weight,
                                   evaluate, fallback_picks, infeasibility, min_replicas, picks_of,
                                   problem_from_pipeline, stage_options, to_configuration)
from ipa.optimizer.solver import SOLVERS, make_solver, solve

__all__ = [
    "COMBINATION_LIMIT", "Evaluation", "Model", "Option", "Problem", "SOLVERS", "StageOptions",
    "brute_force", "build_model", "check_rate", "check_weight", "evaluate", "fallback_picks",
    "infeasibility", "make_solver", "min_replicas", "pas_formulation", "picks_of",
    "problem_from_pipeline", "solve", "stage_options", "to_configuration",
]
