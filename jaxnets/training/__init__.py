"""What every experiment shares: the run folder, checkpoints, plots and the trainer."""
