"""From questions to activations: model loading, chat templates and EOI tokens, packed extraction, the on-disk cache."""
