"""Sharing probes: manifests, registries (a local folder or a Hub repo), saved reports, and upgrades of old folders."""
