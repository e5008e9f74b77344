"""Named exceptions and warnings.

Every error a user can trigger with bad input is one of these, so callers can
catch ``StaggerlabError`` (or the builtin it also subclasses) and messages can
say what was seen and what to do.
"""

from __future__ import annotations


class StaggerlabError(Exception):
    """Base class of every staggerlab error."""


class ArgumentError(StaggerlabError, ValueError):
    """An argument has a value the call cannot use (unknown option, out of range)."""


class ArgumentTypeError(StaggerlabError, TypeError):
    """An argument is missing, of the wrong type, or combined with one it excludes."""


class PanelError(StaggerlabError, ValueError):
    """The data cannot form a valid panel."""


class MissingColumnError(PanelError, KeyError):
    """A column named in the call is not in the data."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DuplicateRowsError(PanelError):
    """Two or more rows share the same (unit, time) pair."""


class EmptyPanelError(PanelError):
    """The frame (or what is left of it after dropping missing values) is empty."""


class NonNumericError(StaggerlabError, TypeError):
    """An outcome or regressor column is not numeric."""


class MissingValueError(PanelError):
    """NaN, null or inf in a used column, and ``na="raise"`` was asked for."""


class FormulaError(StaggerlabError, ValueError):
    """The model formula cannot be parsed or refers to nothing usable."""


class CollinearityError(StaggerlabError, ValueError):
    """Every regressor is collinear with the fixed effects (nothing left to estimate)."""


class ConvergenceError(StaggerlabError, RuntimeError):
    """The iterative demeaning did not reach its tolerance within ``maxiter``."""


class VcovError(StaggerlabError, ValueError):
    """The requested variance estimator cannot be computed (e.g. fewer than 2 clusters)."""


class TreatmentError(StaggerlabError, ValueError):
    """The treatment is not usable (never varies, not absorbing, not binary...)."""


class NonAbsorbingTreatmentError(TreatmentError):
    """A 0/1 treatment switches off (1 then 0) for some unit: it defines no
    staggered adoption times."""


class SeparationError(StaggerlabError, ValueError):
    """A logit/probit likelihood has no maximum: (quasi-)complete separation."""



class DGPError(StaggerlabError, ValueError):
    """A DGP specification is invalid (unknown preset or knob, impossible design)."""


class MonteCarloError(StaggerlabError, ValueError):
    """A Monte Carlo study is misspecified (unknown estimator, foreign checkpoint...)."""


class WildBootError(ArgumentError):
    """The wild bootstrap cannot be run as asked (bad option, unknown parameter...)."""


class IdentificationError(StaggerlabError, ValueError):
    """The IV model is not identified (fewer instruments than endogenous regressors)."""


class HonestDiDError(StaggerlabError, ValueError):
    """The event study cannot be used for a Rambachan-Roth sensitivity analysis."""


class CovariatesNotSupportedError(StaggerlabError, NotImplementedError):
    """Covariates are not supported in the requested Callaway-Sant'Anna setting
    (an unbalanced panel with ``allow_unbalanced_panel=True``)."""


class OverlapError(SeparationError):
    """A propensity score of (nearly) 0 or 1 within one Callaway-Sant'Anna 2x2
    (cohort, period): the overlap condition fails there."""


class SingularCovariatesError(CollinearityError):
    """The covariates are collinear (or constant) within one Callaway-Sant'Anna
    2x2 (cohort, period): its outcome regression or propensity score has no
    unique solution."""


class EventStudyError(StaggerlabError, ValueError):
    """An event study cannot be set up as requested (window, reference, method)."""


class ReferencePeriodError(EventStudyError):
    """The event study's coefficients would not be relative to the named reference
    period(s): a reference period is not observed, or the relative-period dummies
    are collinear with the fixed effects (one more period must be normalised)."""


class InfeasibleBalanceError(StaggerlabError, ValueError):
    """No positive control weights can reproduce the treated moments."""


class NoCommonSupportError(StaggerlabError, ValueError):
    """No treated row has a control within the caliper (no common support)."""


class EntropyIndexError(StaggerlabError, ValueError):
    """The entropy-weight index cannot be computed (e.g. every column is constant)."""


class SelectionError(StaggerlabError, ValueError):
    """The selection indicator is unusable (not 0/1, or no variation)."""


class PowerError(StaggerlabError, ValueError):
    """A power study cannot answer as asked (e.g. the target power is not reached on the effect grid)."""


class PartitionError(PanelError):
    """A partitioned panel is not partitioned by unit (a unit's rows lie in two
    partitions); ``staggerlab.repartition_by_unit`` fixes it."""


class PartitionedDesignError(StaggerlabError, NotImplementedError):
    """The design cannot be fitted exactly on partitioned data (it would need an
    iterative solve across partitions, or an option the partitioned path lacks)."""


class ClientMemoryError(StaggerlabError, MemoryError):
    """A partitioned procedure asked to be bit-identical to the in-memory one
    (``exact="require"``) would gather more to the client than its
    ``client_budget`` allows."""


class StaggerlabWarning(UserWarning):
    """Base class of staggerlab warnings."""


class SingletonWarning(StaggerlabWarning):
    """Singleton observations were dropped."""


class MissingValueWarning(StaggerlabWarning):
    """Rows with missing or non-finite values were dropped."""


class CollinearityWarning(StaggerlabWarning):
    """Collinear regressors were dropped."""


class BalanceConvergenceError(ConvergenceError):
    """Entropy balancing stopped (``maxiter`` reached or no descent step left)
    before the moment gaps fell below ``tol``, although the target moments are
    attainable."""


class MissingOutcomeError(PanelError):
    """The outcome is missing on every row a step of the estimator needs."""


class MatchingWarning(StaggerlabWarning):
    """Some treated rows got fewer than ``k`` matches, or none (pool exhausted
    without replacement, pool smaller than ``k``, or outside the caliper)."""


class ResidualVarianceWarning(StaggerlabWarning):
    """The covariates predict the treatment (almost) perfectly: the variance of
    its residual, on which the estimate rests, is near zero."""


class AdoptionGapWarning(StaggerlabWarning):
    """Adoption periods are not pinned down by the data: a unit's adoption-period
    row is missing (so only an interval is known), or a cohort value is missing
    and read as never treated."""


class UnboundedIntervalWarning(StaggerlabWarning):
    """A confidence set is the whole line (or a half-line): no null value far
    from the estimate is rejected, e.g. a wild bootstrap with too few distinct draws."""


class SingleClusterWarning(StaggerlabWarning):
    """An estimate rests on the rows of one cluster: its cluster-robust standard
    error cannot see that cluster's own noise and understates the uncertainty."""


class HonestDiDWarning(StaggerlabWarning):
    """A Rambachan-Roth robust confidence set could not be computed as asked (e.g. it is empty)."""


class HonestGridWarning(HonestDiDWarning):
    """A relative-magnitudes confidence interval touches the edge of the range of theta scanned."""


class WeightsError(PanelError):
    """The weights column has zero or negative values (weights must be positive)."""


class SpecError(ArgumentError):
    """A battery spec file is not valid TOML, or has an unknown key or a value of the wrong type."""


class CheckpointResumedWarning(StaggerlabWarning):
    """A Monte Carlo study resumed from a checkpoint: how many finished blocks it found."""
