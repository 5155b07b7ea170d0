"""Training: the loop and its collaborators (optimizer and schedule, EMA, checkpoints, loggers,
distribution). ``python train.py`` runs :func:`detector.tasks.train.run`."""
