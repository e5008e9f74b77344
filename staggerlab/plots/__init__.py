"""Matplotlib figures (event studies, placebo distributions, Monte Carlo tables)."""
