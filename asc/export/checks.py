"""ONNX Runtime against the fp32 PyTorch model: fp32 / fp16 files must agree within a tolerance, INT8 files are
judged by top-1 agreement on real clips (random inputs lie outside the calibrated range: reported only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# ORT vs PyTorch (fp32 reference): |onnx - torch| <= ATOL + RTOL * |torch| elementwise; INT8 is judged by agreement.
TOLERANCES = {"fp32": (1e-4, 1e-4), "fp16": (5e-2, 2e-2)}
MIN_INT8_AGREEMENT = 0.9


@dataclass
class ExportCheck:
    """ONNX Runtime against the fp32 PyTorch model on one set of inputs."""

    inputs: str  # "random" or "real"
    n: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: str  # what was required, in words
    passed: bool | None  # None: reported only (INT8 on random inputs)


def compare(session, reference: nn.Module, inputs: np.ndarray, precision: str, kind: str,
            batch_size: int = 64) -> ExportCheck:
    """Run ``inputs`` through the ONNX session and the fp32 PyTorch ``reference``; judge by precision."""
    name = session.get_inputs()[0].name
    ours, theirs = [], []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            batch = np.ascontiguousarray(inputs[i:i + batch_size])
            ours.append(session.run(None, {name: batch})[0])
            theirs.append(reference(torch.from_numpy(batch)).float().numpy())
    a, b = np.concatenate(ours).astype(np.float64), np.concatenate(theirs).astype(np.float64)
    diff = float(np.abs(a - b).max())
    agreement = float((a.argmax(1) == b.argmax(1)).mean())
    if precision in TOLERANCES:
        atol, rtol = TOLERANCES[precision]
        passed = bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))
        tolerance = f"|onnx - torch| <= {atol:g} + {rtol:g}·|torch|"
    elif kind == "real":
        passed = agreement >= MIN_INT8_AGREEMENT
        tolerance = f"top-1 agreement >= {MIN_INT8_AGREEMENT:.0%}"
    else:
        passed, tolerance = None, "reported only (random inputs are outside the calibrated range)"
    return ExportCheck(inputs=kind, n=len(inputs), max_abs_diff=diff, top1_agreement=agreement,
                       tolerance=tolerance, passed=passed)


def run_checks(session, reference: nn.Module, random_inputs: np.ndarray, real_inputs: np.ndarray | None,
            precision: str) -> list[ExportCheck]:
    checks = [compare(session, reference, random_inputs, precision, "random", batch_size=len(random_inputs) - 1)]
    if real_inputs is not None:
        checks.append(compare(session, reference, real_inputs, precision, "real"))
    return checks
