"""Load a causal LM and its tokenizer from a Hub id, a local folder or a GGUF file, with a fingerprint.

GGUF files are dequantized by ``transformers`` (slow, ~20 s for SmolLM2), so the converted weights are
cached as a safetensors folder keyed by the GGUF's sha256 and later loads read that folder instead.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from probes_hub.atomic import atomic_folder
from probes_hub.cache import cache_dir, file_sha256, sha256_text
from probes_hub.config import setting
from probes_hub.constants import EMBEDDED_MODEL_ALIAS
from probes_hub.extract.packaged import PACKAGED_MODELS, packaged_gguf
from probes_hub.schema.naming import is_hub_id

if TYPE_CHECKING:  # torch is imported where a model is loaded, so display_id_for stays cheap
    import torch

    from probes_hub.extract.prompts import PromptFormat

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for activation extraction, plus what probes need to record about it."""

    model: torch.nn.Module
    tokenizer: object
    fingerprint: str
    display_id: str
    device: torch.device
    dtype: torch.dtype
    chat: bool = True
    """How its prompts are built by default: its chat template (chat models), or the raw question/answer format (base models)."""
    spec: str | None = None
    """What :func:`load_model` was given (after defaults), so that another process can load the same model (None: built in memory)."""
    prefix_states: dict = field(default_factory=dict, repr=False, compare=False)
    """Keys and values of shared prompt prefixes, per block (filled by extraction, reused across calls)."""
    forward_lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Held by extraction: its hooks and attention switch live on the shared model, so one forward pass at a time."""
    _formats: dict = field(default_factory=dict, repr=False, compare=False)

    def prompt_format(self, chat: bool | None = None) -> PromptFormat:
        """How this model's prompts are built, for extraction, generation, the app and analysis alike: the chat template
        (``chat=True``) or the raw question/answer prompt (``False``); None: the model's own default (:attr:`chat`)."""
        from probes_hub.extract.prompts import prompt_format

        chat = self.chat if chat is None else chat
        if chat not in self._formats:
            self._formats[chat] = prompt_format(self.tokenizer, chat=chat)
        return self._formats[chat]

    @property
    def dtype_name(self) -> str:
        """The precision of the weights and the forward pass (``"float32"``, ``"bfloat16"``)."""
        return str(self.dtype).removeprefix("torch.")

    def in_dtype(self, dtype: str) -> LoadedModel:
        """The same weights in precision ``dtype`` (``self`` when already in it), with its own fingerprint: loaded again from
        :attr:`spec` (a bfloat16 copy could not give the float32 weights back), or for a model built in memory a converted copy."""
        import copy

        import torch

        from probes_hub.extract.precision import FLOAT32, with_dtype

        if dtype == self.dtype_name:
            return self
        if self.spec is not None:
            return load_model(self.spec, device=str(self.device), dtype=dtype)
        if self.dtype_name != FLOAT32:
            raise ValueError(f"{self.display_id} was built in memory in {self.dtype_name}; its {dtype} weights cannot be recovered. Build it in float32.")
        torch_dtype = getattr(torch, dtype)
        with self.forward_lock:  # extraction's hooks are never part of the copy
            model = copy.deepcopy(self.model)
        for parameter in model.parameters():  # the weights only: buffers (rotary frequencies) stay float32, as a model loaded so keeps them
            parameter.data = parameter.data.to(torch_dtype)
        return LoadedModel(model, self.tokenizer, with_dtype(self.fingerprint, dtype), self.display_id, self.device, torch_dtype,
                           chat=self.chat, spec=self.spec)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def decoder_layers(self) -> torch.nn.ModuleList:
        """The list of transformer blocks whose outputs are the residual stream."""
        return self.model.get_decoder().layers


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_model_spec(spec: str | None) -> str:
    """Turn ``None`` into ``$PROBES_HUB_MODEL`` or the embedded alias."""
    return spec or setting("PROBES_HUB_MODEL") or EMBEDDED_MODEL_ALIAS


def display_id_for(spec: str | None) -> str:
    """The display id :func:`load_model` gives ``spec``, known without loading anything."""
    spec = resolve_model_spec(spec)
    if spec in PACKAGED_MODELS:
        return PACKAGED_MODELS[spec].display_id
    if spec.lower().endswith(".gguf"):
        return Path(spec).name
    if Path(spec).is_dir():
        return Path(spec).resolve().name
    return spec


def load_model(spec: str | None = None, *, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load a causal LM for extraction.

    Args:
        spec: a packaged model's alias (``"smollm2"``, the embedded default; ``"gemma3-270m"`` after ``make models``),
            a path to a ``.gguf`` file, a local model folder,
            or a Hugging Face Hub id (needs network or a warm HF cache). ``None`` means
            ``$PROBES_HUB_MODEL`` or the embedded model.
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"auto"``; default: the command's ``--dtype`` or ``PROBES_HUB_DTYPE``, else
            float32 (:func:`probes_hub.extract.precision.resolve_dtype`).

    Returns:
        LoadedModel with a fingerprint of the form ``source@revision:dtype``.

    >>> lm = load_model("smollm2")  # doctest: +SKIP
    >>> lm.n_layers, lm.hidden_size  # doctest: +SKIP
    (30, 576)
    """
    import torch

    from probes_hub.extract.precision import resolve_dtype

    spec = resolve_model_spec(spec)
    device_t = torch.device(device) if device else default_device()
    dtype_name = resolve_dtype(dtype, device_t.type)
    torch_dtype = getattr(torch, dtype_name)

    display_id = display_id_for(spec)
    if spec in PACKAGED_MODELS:
        gguf = packaged_gguf(spec)  # sha256 checked against the pinned value
        folder, source = _converted_gguf_folder(gguf), f"gguf:{file_sha256(gguf)}"
    elif spec.lower().endswith(".gguf"):
        gguf = Path(spec)
        if not gguf.is_file():
            raise FileNotFoundError(f"GGUF file not found: {spec}")
        folder, source = _converted_gguf_folder(gguf), f"gguf:{file_sha256(gguf)}"
    elif Path(spec).is_dir():
        folder, source = Path(spec), f"local:{_folder_digest(Path(spec))}"
    elif not is_hub_id(spec):
        raise FileNotFoundError(f"Model {spec!r}: no such folder or .gguf file here (a Hub model is given as 'org/name').")
    else:
        folder, source = None, None

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = str(folder) if folder is not None else spec
    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch_dtype)
    except OSError as error:
        raise OSError(
            f"Could not load model '{spec}': not a packaged model ({', '.join(PACKAGED_MODELS)}), not a .gguf file, "
            f"not a local folder, and the Hub id could not be fetched ({error})."
        ) from error
    if source is None:
        source = f"hub:{spec}@{getattr(model.config, '_commit_hash', None) or 'unknown'}"
    model.to(device_t).eval()
    chat = PACKAGED_MODELS[spec].chat if spec in PACKAGED_MODELS else bool(getattr(tokenizer, "chat_template", None))
    return LoadedModel(model, tokenizer, f"{source}:{dtype_name}", display_id, device_t, torch_dtype, chat=chat, spec=spec)


def _folder_digest(folder: Path) -> str:
    """Content digest of a local model folder: config plus the sha256 of each weights file."""
    parts = []
    for path in sorted(folder.iterdir()):
        if path.name == "config.json" or path.suffix in {".safetensors", ".bin", ".json", ".model"}:
            parts.append(f"{path.name}={file_sha256(path)}")
    return sha256_text(*parts)[:16]


def _converted_gguf_folder(gguf: Path) -> Path:
    """Return a folder with the GGUF's weights as float32 safetensors, converting once per file hash."""
    folder = cache_dir("gguf") / file_sha256(gguf)
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to safetensors once (cached in %s)", gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantized model is plain float32; drop the GGUF marker so it can be saved as safetensors.
    del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_folder(folder, tag="convert") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder
