"""The app's model in a worker process, so it loads while the main process imports Gradio and builds the UI.

Importing torch and transformers' model code and loading the weights take about as long as importing
Gradio; in one process they add up, in two they overlap (on two or more cores). This module imports only
the standard library and numpy at the top, so the main process can start the worker first.
:class:`ModelWorker` is a :class:`~probes_hub.extract.feature_source.FeatureSource`: requests go as
length-prefixed JSON over the worker's stdin, replies come back as JSON plus safetensors (no pickle).

Run as ``python -m space_app.model_worker [MODEL]``; the app starts it (``PROBES_HUB_MODEL_WORKER=0`` or a
ZeroGPU Space, which needs the model in the main process, keep the model in process instead).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from typing import IO

_HEADER = struct.Struct(">Q")


class ModelWorkerError(RuntimeError):
    """The worker could not load the model, or it exited."""


def _send(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes | None:
    """One message, or None at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


class ModelWorker:
    """A model loading (then serving features) in a child process.

    ``display_id`` is known at once; ``fingerprint``, ``hidden_size`` and ``features`` wait until the model is loaded.
    """

    def __init__(self, model: str | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "space_app.model_worker", model or ""], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        from probes_hub.extract.models import display_id_for

        self.display_id = display_id_for(model)
        self._lock = threading.Lock()
        self._info: dict | None = None

    def _reply(self) -> dict:
        payload = _receive(self.process.stdout)
        if payload is None:
            raise ModelWorkerError(f"The model worker exited (code {self.process.wait()}); its log is above.")
        reply = json.loads(payload)
        if "error" in reply:
            raise (ValueError if reply.get("type") == "ValueError" else ModelWorkerError)(reply["error"])
        return reply

    def info(self) -> dict:
        """The loaded model's fingerprint and hidden size (blocks until the model is loaded)."""
        with self._lock:
            if self._info is None:
                self._info = self._reply()
        return self._info

    @property
    def fingerprint(self) -> str:
        return self.info()["fingerprint"]

    @property
    def hidden_size(self) -> int:
        return int(self.info()["hidden_size"])

    def features(self, questions: list[str], layers: list[int], *, chat: bool = True, max_length: int = 1024,
                 data_hash: str | None = None, use_cache: bool = False, progress: bool = False, token_layers: list[int] = ()):
        """As :meth:`probes_hub.extract.feature_source.ModelFeatures.features`, computed in the worker."""
        from safetensors.numpy import load

        from probes_hub.extract.features import Features, TokenStates
        from probes_hub.hub.records import ModelInfo

        self.info()
        request = {"questions": questions, "layers": [int(layer) for layer in layers], "chat": chat, "max_length": max_length,
                   "data_hash": data_hash, "use_cache": use_cache, "progress": progress, "token_layers": [int(layer) for layer in token_layers]}
        with self._lock:
            _send(self.process.stdin, json.dumps(request).encode())
            reply = self._reply()
            arrays = load(_receive(self.process.stdout) or b"")
        tokens = {layer: TokenStates(layer, arrays[f"token_values_{layer}"], arrays[f"token_offsets_{layer}"]) for layer in reply.get("token_layers", [])}
        features = Features(questions, arrays["token_counts"], arrays.get("activations"), tuple(reply["layers"]), tuple(reply["positions"]),
                            ModelInfo.from_dict(reply["model"]), tokens)
        return features, [bool(t) for t in arrays["truncated"]]

    def close(self) -> None:
        """End the worker (it also ends by itself when this process exits and its stdin closes)."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def serve(model: str | None, requests: IO[bytes], replies: IO[bytes]) -> int:
    """Load the model, announce it, then answer feature requests until ``requests`` closes."""
    import traceback

    import numpy as np
    from safetensors.numpy import save

    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model

    try:
        source = ModelFeatures(load_model(model or None))
    except Exception as error:  # logged here, and reported to the app, which raises it where the model is needed
        traceback.print_exc()
        _send(replies, json.dumps({"error": f"Could not load the model: {type(error).__name__}: {error}"}).encode())
        return 1
    _send(replies, json.dumps({"fingerprint": source.fingerprint, "hidden_size": source.hidden_size}).encode())
    while (payload := _receive(requests)) is not None:
        request = json.loads(payload)
        try:
            features, truncated = source.features(request.pop("questions"), request.pop("layers"), **request)
        except Exception as error:  # one bad request fails that request only
            _send(replies, json.dumps({"error": str(error), "type": type(error).__name__}).encode())
            continue
        arrays = {"token_counts": np.asarray(features.token_counts, dtype=np.int64), "truncated": np.asarray(truncated, dtype=np.uint8)}
        if features.activations is not None:
            arrays["activations"] = np.ascontiguousarray(features.activations)
        for layer, states in features.tokens.items():
            arrays.update({f"token_values_{layer}": np.ascontiguousarray(states.values), f"token_offsets_{layer}": states.offsets})
        _send(replies, json.dumps({"layers": list(features.layers), "positions": list(features.positions), "model": features.model.to_dict(),
                                   "token_layers": list(features.tokens)}).encode())
        _send(replies, save(arrays))
    return 0


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log, not into the reply stream
    return serve(sys.argv[1] if len(sys.argv) > 1 else None, sys.stdin.buffer, replies)


if __name__ == "__main__":
    sys.exit(main())
