"""The lab: the Gradio app's parts (app.py builds and launches it)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before any part of the lab imports gradio
