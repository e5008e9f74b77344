"""Resampling inference on a fit: randomized placebo tests, the wild cluster bootstrap, split-sample permutations."""
