"""Procedures on partitioned panels (dask DataFrames or directories of parquet
files, every unit's rows in one partition): ``feols``, ``placebo`` and the
wild bootstrap; dask is imported only when such a panel is used."""
