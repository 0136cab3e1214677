"""Every environment variable the library and the app read: its type, default and meaning, parsed by one rule.

Read a value with :func:`setting`; :func:`check_settings` parses them all at once (the app calls it before it
starts, so a bad value stops it with one line naming the variable). ``docs/configuration.md`` is generated
from :data:`SETTINGS` (``python -m probes_hub.config``), and a test keeps the two equal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable holds a value its setting does not accept."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: how its text is parsed, its default when unset or empty, and what it changes."""

    name: str
    kind: type
    """``str``, ``int``, ``float`` or ``bool`` (``1``/``0``)."""
    default: str | int | float | bool | None
    meaning: str
    minimum: float | None = None
    """Smallest accepted number (int and float settings)."""
    choices: tuple[str, ...] = ()
    """The accepted words (str settings that name one of a few options)."""

    def read(self) -> str | int | float | bool | None:
        """The parsed value from the environment, or the default when unset or empty.

        Raises:
            ConfigError: the value does not parse, or is below :attr:`minimum`; the message names the variable and what it accepts.
        """
        text = os.environ.get(self.name, "").strip()
        if not text:
            return self.default
        if self.kind is str:
            if self.choices and text not in self.choices:
                raise ConfigError(f"{self.name}={text[:40]!r} is not accepted: use one of {', '.join(self.choices)} (default {self.default}).")
            return text
        if self.kind is bool:
            if text not in ("0", "1"):
                raise ConfigError(f"{self.name}={text[:40]!r} is not accepted: use 1 (on) or 0 (off).")
            return text == "1"
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or value != value or (self.minimum is not None and value < self.minimum):
            accepted = f"{'a whole number' if self.kind is int else 'a number'}{f' >= {self.minimum:g}' if self.minimum is not None else ''}"
            raise ConfigError(f"{self.name}={text[:40]!r} is not accepted: use {accepted} (default {self.default}).")
        return value

    @property
    def accepted(self) -> str:
        """What the setting takes, in words (for the docs)."""
        if self.kind is bool:
            return "1 or 0"
        if self.kind is str:
            return " or ".join(f"`{choice}`" for choice in self.choices) if self.choices else "text"
        return f"{'integer' if self.kind is int else 'number'}{f' >= {self.minimum:g}' if self.minimum is not None else ''}"


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("PROBES_HUB_MODEL", str, None, "Source model: a packaged alias (`smollm2`, `gemma3-270m`), a .gguf file, a model folder or a Hub id. "
            "Default: the embedded `smollm2`."),
    Setting("PROBES_HUB_DTYPE", str, "float32", "Precision of the source model's weights and forward pass: `float32`, `bfloat16`, or `auto` "
            "(bfloat16 on a GPU or a CPU with bfloat16 units, float32 elsewhere); commands' `--dtype` wins. A probe is read in another "
            "precision than its own only after it passed `probes-hub verify-dtype`; otherwise in its own (docs/precision.md).",
            choices=("float32", "bfloat16", "auto")),
    Setting("PROBES_HUB_DATA_DIR", str, None, "Data folder of the built-in datasets (the `--data-dir` option wins). Default: `../shared/data` beside the project."),
    Setting("PROBES_HUB_CACHE", str, None, "Cache folder (converted GGUF weights, activations, tokens). Default: `~/.cache/probes_hub`."),
    Setting("PROBES_HUB_NO_PROGRESS", bool, False, "1 hides progress bars (CI logs)."),
    Setting("PROBES_HUB_REGISTRY", str, None, "The app's registry: a folder or a Hub repo id; uploads go there. Default: the bundled `registry/`."),
    Setting("PROBES_HUB_REGISTRY_REFRESH", float, 300.0, "Seconds between the app's checks of a Hub registry for new probes; while the Hub "
            "is unreachable the app serves its last snapshot and says so. 0 turns the checks off.", 0),
    Setting("PROBES_HUB_UPLOAD_TOKENS", str, None, "Who may upload when the app is not on a Space: comma-separated `name:secret` pairs; an "
            "upload gives its secret in the Upload tab's token field and is logged under the name. Unset (and not on a Space): uploads are off."),
    Setting("PROBES_HUB_UPLOADERS", str, None, "On a Space: comma-separated Hugging Face user names allowed to upload after signing in. "
            "Unset: every signed-in user."),
    Setting("PROBES_HUB_UPLOADS_PER_DAY", int, 3, "Accepted uploads per user per UTC day.", 0),
    Setting("PROBES_HUB_UPLOAD_MB_PER_USER", float, 64.0, "Megabytes of accepted uploads one user may have in the registry.", 0),
    Setting("PROBES_HUB_AUDIT_LOG", str, None, "The audit log (JSON lines) of uploads and removals. Default: `.NAME.audit.jsonl` beside a "
            "local registry folder, or the cache for a Hub registry (on a Space, point it at persistent storage such as `/data`)."),
    Setting("PROBES_HUB_LEADERBOARD", str, None, "The app's leaderboard: a folder or a Hub dataset repo id. Default: the bundled `leaderboard/`."),
    Setting("PROBES_HUB_LEADERBOARD_EVERY", float, 0.0, "Seconds between the app's background leaderboard refreshes; 0 turns them off.", 0),
    Setting("PROBES_HUB_POOLS", str, "math,mmlu-pro-25", "Routing pools the app offers: comma-separated bundled names or pool files; the first is preselected."),
    Setting("PROBES_HUB_OBTAIN_MODELS", bool, True, "1: at start-up the app installs the model's and the sentence encoder's pinned packages into the "
            "cache (pip, hash-checked) when they are missing, as on a Hugging Face Space; 0: it stops with the install command instead."),
    Setting("PROBES_HUB_MODEL_WORKER", bool, True, "1 loads the app's model in a supervised worker process while Gradio imports; 0 in the app's "
            "process (always so on a ZeroGPU Space)."),
    Setting("PROBES_HUB_QUEUE_SIZE", int, 64, "Requests the app lets wait at most; beyond it clients are told the app is busy.", 1),
    Setting("PROBES_HUB_CONCURRENCY", int, 2, "Requests the app's queue runs at once (per event, unless the event sets its own limit).", 1),
    Setting("PROBES_HUB_SESSIONS", int, 50, "Browser and API sessions whose state the app keeps in memory (Gradio's "
            "`state_session_capacity`); the oldest are dropped beyond it (the app's events need no earlier state). Each holds a "
            "copy of the page's component values (about 0.3 MB after a prediction, 0.75 MB after a leaderboard read), so this "
            "bounds the app's memory over a long run.", 1),
    Setting("PROBES_HUB_MAX_BATCH", int, 32, "Concurrent questions one forward pass answers at most (1 turns batching off).", 1),
    Setting("SYSTEM", str, None, "Set to `spaces` by Hugging Face on a Space: uploads then need Hugging Face sign-in (the Space's README "
            "has `hf_oauth: true`). Not for users to set."),
    Setting("SPACES_ZERO_GPU", str, None, "Set by Hugging Face on ZeroGPU Spaces (any value): the model then runs in the app's process and "
            "each batch of predictions borrows the GPU through `spaces.GPU`. Not for users to set."),
    Setting("GRADIO_SERVER_NAME", str, "127.0.0.1", "Address the app listens on (a Space sets 0.0.0.0)."),
    Setting("GRADIO_SERVER_PORT", int, 7860, "Port the app listens on.", 1),
)}
"""Every environment variable read anywhere in the library and the app, by name."""


def setting(name: str) -> str | int | float | bool | None:
    """The parsed value of one setting (see :data:`SETTINGS`)."""
    return SETTINGS[name].read()


def check_settings() -> None:
    """Parse every setting once; raises :class:`ConfigError` for the first bad one."""
    for item in SETTINGS.values():
        item.read()


def settings_markdown() -> str:
    """``docs/configuration.md``: one table row per setting."""
    rows = ["# Configuration", "", "Environment variables read by the library, the CLI and the app (generated from `probes_hub/config.py` by "
            "`python -m probes_hub.config > docs/configuration.md`; a test keeps them equal). An empty value counts as unset. A value that does "
            "not parse stops the command or the app with one line naming the variable.", "",
            "| variable | accepts | default | meaning |", "|---|---|---|---|"]
    for item in SETTINGS.values():
        default = "unset" if item.default is None else f"`{int(item.default) if item.kind is bool else item.default}`"
        rows.append(f"| `{item.name}` | {item.accepted} | {default} | {item.meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_markdown())
