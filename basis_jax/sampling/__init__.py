"""Sampling: the annealed Langevin sampler, its schedules, the mixing operators, best of S
and the separation run that ties them to data and priors."""
