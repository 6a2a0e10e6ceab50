"""Two tiny digit classifiers: what a model repository checked by deploytool in CI looks like."""
