"""Studies: Monte Carlo replications of estimators on DGPs with known truth."""
