"""Sample quality: `dcgan eval`'s scores (metrics.py), its feature network described in the
spec language (network.py), the network's weights and data (features.py), scoring a generator
on any backend (evaluate.py) and the command's output (report.py)."""
