"""Decode an Ultralytics YOLO (v8/v11 "detect") output and suppress duplicates, vectorised with numpy.

The raw output is (batch, 4 + nc, anchors): rows 0-3 are box centre x, y, width, height in model-input pixels,
the other rows one score per class (already sigmoid). Several model classes may share one label (the bundled
person model says "Normal" and "Fall", both a person), so scores are first merged per label and NMS runs per
label: two classes of one person must not count as two people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CANDIDATES = 3000  # top scores kept before NMS (Ultralytics' max_nms default)


@dataclass(frozen=True)
class RawDetections:
    """Detections of one image: xyxy boxes (N, 4), scores (N,), label indices (N,), best first."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def merge_label_scores(class_scores: np.ndarray, class_to_label: np.ndarray, n_labels: int) -> np.ndarray:
    """(nc, A) class scores -> (n_labels, A): each label takes the best score of its classes."""
    if n_labels == class_scores.shape[0] and np.array_equal(class_to_label, np.arange(n_labels)):
        return class_scores
    merged = np.zeros((n_labels, class_scores.shape[1]), class_scores.dtype)
    np.maximum.at(merged, class_to_label, class_scores)
    return merged


def decode(output: np.ndarray, class_to_label: np.ndarray, n_labels: int, conf: float, iou: float,
           max_det: int = 300) -> RawDetections:
    """One image's (4 + nc, A) output -> detections above ``conf`` after per-label NMS."""
    if output.ndim != 2 or output.shape[0] != 4 + class_to_label.shape[0]:
        raise ValueError(f"expected (4 + {class_to_label.shape[0]}, anchors) output, got {output.shape}")
    scores_all = merge_label_scores(output[4:], class_to_label, n_labels)
    labels = scores_all.argmax(axis=0)
    scores = scores_all[labels, np.arange(scores_all.shape[1])]
    keep = np.flatnonzero(scores >= conf)
    if keep.size > MAX_CANDIDATES:
        keep = keep[np.argpartition(-scores[keep], MAX_CANDIDATES)[:MAX_CANDIDATES]]
    cx, cy, w, h = output[0, keep], output[1, keep], output[2, keep], output[3, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    scores, labels = scores[keep].astype(np.float32), labels[keep]
    idx = batched_nms(boxes, scores, labels, iou)[:max_det]
    return RawDetections(boxes[idx], scores[idx], labels[idx])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of ``a`` (N, 4) and of ``b`` (M, 4), xyxy -> (N, M)."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best = int(order[0])
        kept.append(best)
        if order.size == 1:
            break
        overlap = iou_matrix(boxes[best:best + 1], boxes[order[1:]])[0]
        order = order[1:][overlap <= iou]
    return np.asarray(kept, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """NMS within each label: boxes of different labels are shifted apart so they can never overlap."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    shift = float(boxes.max() - boxes.min()) + 1.0
    return nms(boxes + labels[:, None].astype(np.float32) * shift, scores, iou)
