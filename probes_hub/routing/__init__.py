"""Routing questions to models from success probes: pools, routing policies and their offline evaluation."""
