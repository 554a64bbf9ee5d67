"""What a command does, as named steps: train, walk-forward and cpcv around it, predict, export,
and one DDP rank's process."""
