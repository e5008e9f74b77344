"""Regression core: formula, fitted design, absorption of fixed effects, covariance, results, feols and feiv."""
