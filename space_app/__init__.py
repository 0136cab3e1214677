"""The Gradio app (Hugging Face Space and ``python app.py``) over probes_hub: predict, leaderboard, upload, about."""
