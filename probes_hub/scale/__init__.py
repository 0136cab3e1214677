"""Scale-out on Ray (``pip install "probes-hub[scale]"``, ``--engine ray``): extraction, labelling and leaderboard jobs across actors.

Nothing here is imported unless ``--engine ray`` is asked for; the single-process path stays the default.
"""
