"""What the studies train: the variants (the baseline, then one per registry switch) and the lineage's presets, and
the comma-separated lists of the command line that name them."""

from configuration_gpt2mini import PRESETS, variants
from gpt2mini.checkpoint import UsageError

VARIANTS = variants()  # {name: the config fields it sets}: the baseline, then one variant per registry switch
# the lineage's presets in order of history, named as the variants with the same config where there is one (GPT-1 is
# the post-LN variant, GPT-2 the baseline: the same trials serve both)
LINEAGE = list(dict.fromkeys(next((n for n, v in VARIANTS.items() if v == f), p) for p, f in PRESETS.items()))
NAMED = VARIANTS | {n: PRESETS[n] for n in LINEAGE if n not in VARIANTS}  # everything --variants can name


def parse_list(text: str, known, what: str) -> list[str]:
    """The names of a comma-separated list, each one of `known`; "all" is every one (of NAMED: the ablations) and,
    of NAMED, "lineage" the lineage's presets. A UsageError names what is unknown."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return list(VARIANTS if known is NAMED else known)
    if items == ["lineage"] and known is NAMED:
        return list(LINEAGE)
    unknown = [t for t in items if t not in known]
    if unknown or not items:
        extra = ", all or lineage" if known is NAMED else " or all"
        raise UsageError(f"unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(known)}{extra}")
    return list(dict.fromkeys(items))
