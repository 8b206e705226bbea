"""Where the course keeps its files: the repository's data/ folder and the shipped model.

Used by every chapter; course_lib is installed editable, so these resolve from any folder.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
BASE_MODEL_DIR = DATA_DIR / "base_model"
METRICS_DIR = Path(__file__).resolve().parent / "metrics"
