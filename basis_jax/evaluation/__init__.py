"""Evaluation: metrics, the evaluation report of a run, Inception IS/FID, figures and the
CIFAR-10 classifier used as a yardstick."""
