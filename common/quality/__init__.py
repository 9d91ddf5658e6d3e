"""Sample quality: `dcgan eval`'s scores (metrics.py), its feature network's weights and
data (features.py), scoring a generator (evaluate.py) and the command's output (report.py)."""
