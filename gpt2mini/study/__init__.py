"""What the studies (experiments/) share: the protocol that trains and measures a trial the same way for every
variant, and what their reports and shipped models are made of.

    variants.py   the variants (the baseline, one per registry switch) and the lineage's presets; naming them
    trials.py     a trial: its settings, training and measuring it, the cache of measured trials, running in parallel
    protocol.py   the protocol on a corpus: the sweep, a best at its edge, the seeds at the best, the follow-ups
    tables.py     the tables and lines several reports print (a variant against the baseline, the sweep, the recipe)
    plots.py      the figures of a corpus's result (the sweep, the loss curves, the probes)
    ship.py       a best run as a small model folder, and the sweep's summary for the lab

The records these read and write (a trial's row, a variant's summary, the sweep) are gpt2mini.report.records.
"""
