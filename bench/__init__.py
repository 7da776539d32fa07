"""Benchmarks and the load test: measurements against peers in the same run, not tests.

    python -m bench.speed    training, generation and memory against transformers' GPT2LMHeadModel (docs/performance.md)
    python -m bench.lab      what one user of the running lab feels: time to first character, characters/s per pane
    python -m bench.load     many clients against the running lab: errors, time to first character, memory, a full queue
    python -m bench.against REV   the fast decoder of the working tree against the one at a git revision

Each also runs as a file (`python bench/speed.py`). The tests run their `--quick` forms.
"""
