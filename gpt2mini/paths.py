"""Where the repository keeps what the package reads: one home for these paths (the package sits one level below
the repository root, beside the two model files, data/ and models/)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (or an assembled Space) root
DATA_DIR = ROOT / "data"  # the shipped corpora and PROVENANCE.md
MODELS_DIR = ROOT / "models"  # the shipped models, <corpus>/<variant>
