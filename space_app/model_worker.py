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

import contextlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
from typing import IO

from probes_hub.constants import MAX_PROMPT_TOKENS
from space_app.memory import limit_arenas, release_free_memory

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


STOPPED = "The model worker stopped while answering this request; it is being restarted: retry in a few seconds."
LOAD_FAILED = "load"
LOAD_FAILED_CODE = 3
"""The worker's exit code (and error type) when the model itself cannot load: restarting would not help."""
RESTART_DELAYS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds to wait before restarting a worker that died, by how many times it died in the last RESTART_WINDOW seconds."""
RESTART_WINDOW = 300.0


class ModelWorker:
    """A model loading (then serving features) in a supervised child process.

    ``display_id`` is known at once; ``fingerprint``, ``hidden_size`` and ``features`` wait until the model is loaded.
    A monitor thread notices when the process dies (killed, out of memory) and starts a new one, waiting longer
    after repeated deaths (:data:`RESTART_DELAYS`); the request in flight fails with a clear
    :class:`ModelWorkerError`, later ones are served by the new process. A model that cannot load is not retried.
    """

    def __init__(self, model: str | None = None, *, monitor_every: float = 0.5):
        from probes_hub.extract.models import display_id_for

        self.model = model
        self.display_id = display_id_for(model)
        self._lock = threading.Lock()
        self._info: dict | None = None
        self._load_error: str | None = None
        self._deaths: list[float] = []
        self._closing = False
        self.restarts = 0
        self._start()
        threading.Thread(target=self._monitor, args=(monitor_every,), daemon=True, name="model-worker-monitor").start()
        threading.Thread(target=self._await_first_load, daemon=True, name="model-worker-load").start()

    def _await_first_load(self) -> None:
        """Read the worker's announcement as soon as it comes, so that ``status()`` says "ready" without waiting for a request."""
        with contextlib.suppress(ModelWorkerError):  # a load failure is kept in _load_error and raised where the model is needed
            self.info()

    def _start(self) -> None:
        previous = getattr(self, "process", None)
        if previous is not None:  # a dead process's pipes
            for stream in (previous.stdin, previous.stdout):
                with contextlib.suppress(OSError):  # closing flushes what a broken pipe still holds
                    stream.close()
        self.process = subprocess.Popen([sys.executable, "-m", "space_app.model_worker", self.model or ""], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        self._info = None
        self.started_at = time.time()

    def _monitor(self, every: float) -> None:
        """Restart the process when it has died (not while closing, nor after a model that cannot load), with backoff."""
        while not self._closing:
            time.sleep(every)
            if self.process.poll() is None or self._closing or self._load_error or self.process.returncode == LOAD_FAILED_CODE:
                continue
            now = time.time()
            self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
            delay = RESTART_DELAYS[min(len(self._deaths), len(RESTART_DELAYS)) - 1]
            print(f"model worker (pid {self.process.pid}) exited with code {self.process.returncode}; restarting in {delay:.0f} s", file=sys.stderr)
            time.sleep(delay)
            with self._lock:
                if not self._closing and self.process.poll() is not None:
                    self.restarts += 1
                    self._start()
                    try:  # load now, so that the health endpoint says "ready" and the next request is served at once
                        self._ready()
                    except ModelWorkerError as error:
                        print(f"model worker restart failed: {error}", file=sys.stderr)

    def status(self) -> dict:
        """The worker's state for the health endpoint: ``ready``, ``loading``, ``restarting`` or ``failed``, with its pid and restart count."""
        alive = self.process.poll() is None
        failed = self._load_error or self.process.returncode == LOAD_FAILED_CODE
        state = "failed" if failed else ("ready" if self._info else "loading") if alive else "restarting"
        return {"state": state, "pid": self.process.pid, "restarts": self.restarts, "error": self._load_error,
                "uptime_s": round(time.time() - self.started_at, 1) if alive else 0.0}

    def _reply(self) -> dict:
        payload = _receive(self.process.stdout)
        if payload is None:
            raise ModelWorkerError(STOPPED)
        reply = json.loads(payload)
        if "error" in reply:
            if reply.get("type") == LOAD_FAILED:
                self._load_error = reply["error"]
            raise (ValueError if reply.get("type") == "ValueError" else ModelWorkerError)(reply["error"])
        return reply

    def _ready(self) -> dict:
        """The loaded model's facts, waiting for the (re)started process to load it; call with the lock held."""
        if self._load_error:
            raise ModelWorkerError(self._load_error)
        if self._info is None:
            self._info = self._reply()
        return self._info

    def info(self) -> dict:
        """The loaded model's fingerprint, hidden size and layer count (blocks until the model is loaded)."""
        with self._lock:
            return self._ready()

    @property
    def fingerprint(self) -> str:
        return self.info()["fingerprint"]

    @property
    def hidden_size(self) -> int:
        return int(self.info()["hidden_size"])

    @property
    def n_layers(self) -> int:
        return int(self.info()["n_layers"])

    @property
    def dtype(self) -> str:
        return str(self.info()["dtype"])

    def in_dtype(self, dtype: str):
        """The worker's model in precision ``dtype`` (the worker converts a copy on the first request for it)."""
        return self if dtype == self.dtype else WorkerInDtype(self, dtype)

    def features(self, questions: list[str], layers: list[int], *, chat: bool | None = None, max_length: int = MAX_PROMPT_TOKENS,
                 data_hash: str | None = None, use_cache: bool = False, progress: bool = False, token_layers: list[int] = (),
                 dtype: str | None = None):
        """As :meth:`probes_hub.extract.feature_source.ModelFeatures.features`, computed in the worker (in ``dtype``, default its own)."""
        from safetensors.numpy import load

        from probes_hub.extract.features import Features, TokenStates
        from probes_hub.schema.records import ModelInfo

        request = {"questions": questions, "layers": [int(layer) for layer in layers], "chat": chat, "max_length": max_length,
                   "data_hash": data_hash, "use_cache": use_cache, "progress": progress, "token_layers": [int(layer) for layer in token_layers],
                   "dtype": dtype}
        with self._lock:
            self._ready()
            try:
                _send(self.process.stdin, json.dumps(request).encode())
                reply = self._reply()
                arrays = load(_receive(self.process.stdout) or b"")
            except OSError as error:  # BrokenPipeError: the process died before or while reading the request
                raise ModelWorkerError(STOPPED) from error
        tokens = {layer: TokenStates(layer, arrays[f"token_values_{layer}"], arrays[f"token_offsets_{layer}"]) for layer in reply.get("token_layers", [])}
        features = Features(questions, arrays["token_counts"], arrays.get("activations"), tuple(reply["layers"]), tuple(reply["positions"]),
                            ModelInfo.from_dict(reply["model"]), tokens)
        return features, [bool(t) for t in arrays["truncated"]]

    def close(self) -> None:
        """End the worker for good (it also ends by itself when this process exits and its stdin closes)."""
        self._closing = True
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class WorkerInDtype:
    """A :class:`ModelWorker`'s model in another precision: a feature source whose requests name that precision."""

    def __init__(self, worker: ModelWorker, dtype: str):
        from probes_hub.extract.precision import with_dtype

        self.worker, self.dtype = worker, dtype
        self.fingerprint = with_dtype(worker.fingerprint, dtype)
        self.display_id, self.hidden_size, self.n_layers = worker.display_id, worker.hidden_size, worker.n_layers

    def in_dtype(self, dtype: str):
        return self.worker.in_dtype(dtype)

    def features(self, questions: list[str], layers: list[int], **options):
        return self.worker.features(questions, layers, **options, dtype=self.dtype)


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
        _send(replies, json.dumps({"error": f"Could not load the model: {type(error).__name__}: {error}", "type": LOAD_FAILED}).encode())
        return LOAD_FAILED_CODE
    _send(replies, json.dumps({"fingerprint": source.fingerprint, "hidden_size": source.hidden_size, "n_layers": source.n_layers,
                               "dtype": source.dtype}).encode())
    while (payload := _receive(requests)) is not None:
        request = json.loads(payload)
        try:
            in_dtype = source.in_dtype(request.pop("dtype", None) or source.dtype)
            features, truncated = in_dtype.features(request.pop("questions"), request.pop("layers"), **request)
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
        release_free_memory()
    return 0


def main() -> int:
    limit_arenas()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to the log, not into the reply stream
    return serve(sys.argv[1] if len(sys.argv) > 1 else None, sys.stdin.buffer, replies)


if __name__ == "__main__":
    sys.exit(main())
