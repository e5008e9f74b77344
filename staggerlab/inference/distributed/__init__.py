"""Procedures on partitioned panels (dask DataFrames or directories of parquet
files, partitioned by unit): ``feols``, ``placebo``; dask is imported lazily."""
