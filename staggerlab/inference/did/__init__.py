"""Staggered difference-in-differences estimators and diagnostics: event studies (TWFE, Sun-Abraham, imputation), Callaway-Sant'Anna, Goodman-Bacon, dCDH weights, HonestDiD."""
