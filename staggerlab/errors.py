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
    """Conditional parallel trends (covariates) are not implemented for Callaway-Sant'Anna."""


class EventStudyError(StaggerlabError, ValueError):
    """An event study cannot be set up as requested (window, reference, method)."""


class InfeasibleBalanceError(StaggerlabError, ValueError):
    """No positive control weights can reproduce the treated moments."""


class NoCommonSupportError(StaggerlabError, ValueError):
    """No treated row has a control within the caliper (no common support)."""


class EntropyIndexError(StaggerlabError, ValueError):
    """The entropy-weight index cannot be computed (e.g. every column is constant)."""


class SelectionError(StaggerlabError, ValueError):
    """The selection indicator is unusable (not 0/1, or no variation)."""

class PartitionError(PanelError):
    """A partitioned panel is not partitioned by unit (a unit's rows lie in two
    partitions); ``staggerlab.repartition_by_unit`` fixes it."""


class PartitionedDesignError(StaggerlabError, NotImplementedError):
    """The design cannot be fitted exactly on partitioned data (it would need an
    iterative solve across partitions, or an option the partitioned path lacks)."""


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
