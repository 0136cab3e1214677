"""Settings: every environment variable parsed by one rule, named in its errors, documented from one table."""

import re
import subprocess
import sys

import pytest

from probes_hub.config import SETTINGS, ConfigError, check_settings, setting, settings_markdown
from probes_hub.paths import PROJECT_ROOT


@pytest.mark.parametrize(("name", "value"), [("PROBES_HUB_MAX_BATCH", "abc"), ("PROBES_HUB_MAX_BATCH", "0"), ("PROBES_HUB_QUEUE_SIZE", "2.5"),
                                             ("PROBES_HUB_LEADERBOARD_EVERY", "-1"), ("PROBES_HUB_LEADERBOARD_EVERY", "nan"),
                                             ("PROBES_HUB_MODEL_WORKER", "yes"), ("GRADIO_SERVER_PORT", "http")])
def test_a_bad_value_names_the_variable_and_what_it_accepts(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"^{name}=.*is not accepted: use "):
        check_settings()


def test_values_parse_and_empty_means_the_default(monkeypatch):
    monkeypatch.setenv("PROBES_HUB_MAX_BATCH", " 8 ")
    monkeypatch.setenv("PROBES_HUB_MODEL_WORKER", "0")
    monkeypatch.setenv("PROBES_HUB_LEADERBOARD_EVERY", "")
    assert setting("PROBES_HUB_MAX_BATCH") == 8 and setting("PROBES_HUB_MODEL_WORKER") is False
    assert setting("PROBES_HUB_LEADERBOARD_EVERY") == 0.0


def test_the_configuration_doc_is_generated_from_the_settings():
    assert (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == settings_markdown(), \
        "run: python -m probes_hub.config > docs/configuration.md"


def test_no_module_reads_the_environment_outside_the_settings():
    """Every variable the product reads is in SETTINGS: no other module of the library or the app calls os.environ/getenv."""
    sources = [*(PROJECT_ROOT / "probes_hub").rglob("*.py"), *(PROJECT_ROOT / "space_app").rglob("*.py"), PROJECT_ROOT / "app.py"]
    readers = [str(p.relative_to(PROJECT_ROOT)) for p in sources
               if p.name != "config.py" and re.search(r"os\.environ\.get|os\.getenv|environ\[\"(PROBES_HUB|GRADIO)", p.read_text(encoding="utf-8"))]
    assert readers == []
    named = {m for p in sources for m in re.findall(r"\"((?:PROBES_HUB|GRADIO_SERVER)_[A-Z_]+)\"", p.read_text(encoding="utf-8"))}
    assert named <= set(SETTINGS)


def test_the_app_stops_with_one_line_naming_a_bad_variable():
    result = subprocess.run([sys.executable, "app.py"], cwd=PROJECT_ROOT, env={"PATH": "/usr/bin:/bin", "PROBES_HUB_MAX_BATCH": "abc"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["error: PROBES_HUB_MAX_BATCH='abc' is not accepted: use a whole number >= 1 (default 32)."]


def test_the_cli_reference_is_generated_from_the_parser():
    from probes_hub.cli_reference import reference_markdown

    assert (PROJECT_ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == reference_markdown(), \
        "run: python -m probes_hub.cli_reference > docs/cli.md"
