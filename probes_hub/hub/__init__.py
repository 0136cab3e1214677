"""Sharing probes: validation of everything loaded from outside, naming, model cards, manifests and registries."""
