"""The probe folder's schema: typed records, validation of everything loaded from outside, names and model cards.

The stages that make probes (data, extraction, probes) import only this; sharing them (``probes_hub.hub``) comes later.
"""
