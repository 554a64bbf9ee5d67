"""What a finished run writes into its folder: predictions, plots, metrics and the summary."""
