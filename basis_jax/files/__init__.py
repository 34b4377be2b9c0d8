"""Data and files: datasets, mixtures, workdirs, atomic writes, weights and checkpoints IO,
sharding over devices."""
