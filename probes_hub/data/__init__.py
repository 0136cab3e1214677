"""Questions and labels: built-in datasets, local files, fixed splits, and success labels from generation."""
