"""Entry point for ``python app.py`` and for a Hugging Face Space (configuration: see space_app/main.py)."""

import os

from space_app.main import create_app

demo, context = create_app()

MAX_FILE_SIZE = "32mb"
"""Largest file the server accepts at all (probe uploads have their own, smaller limits per file)."""

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=int(os.environ.get("PROBES_HUB_CONCURRENCY", "2")),
               max_size=int(os.environ.get("PROBES_HUB_QUEUE_SIZE", "64"))).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_FILE_SIZE)
