"""PyTorch to ONNX: the ``torch.export``-based exporter into an in-memory ``onnx.ModelProto`` (fp16 between float32
casts, or front end and network in one graph), canonical input/output names, metadata, and the atomic write of
every file of one export. ``onnx`` is an optional heavy import: it is loaded when a graph is built."""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from asc.errors import AscError, first_lines
from asc.fileio import atomic_path

OUTPUT_NAME = "logits"


class ExportError(AscError):
    """A model cannot be exported, calibrated or checked."""


class HalfPrecision(nn.Module):
    """The network in fp16 between float32 input and output casts (so callers always exchange float32)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


class FrontendAndModel(nn.Module):
    def __init__(self, frontend: nn.Module, model: nn.Module):
        super().__init__()
        self.frontend, self.model = frontend, model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(waveform))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's and the quantizer's progress prints and warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def torch_to_onnx(module: nn.Module, example: torch.Tensor, input_name: str, what: str):
    """Export ``module`` (eval mode, dynamic batch axis) to an in-memory ``onnx.ModelProto``.

    Uses the ``torch.export``-based exporter (it folds BatchNorm and exports ``torch.stft``; the TorchScript one
    exports neither STFT nor data-dependent control flow faithfully). Raises :class:`ExportError` naming ``what``.
    """
    import onnx

    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="asc-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with quiet(), torch.no_grad():
                torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[OUTPUT_NAME],
                                  dynamo=True, external_data=False, optimize=True, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            model = onnx.load(str(path), load_external_data=True)
            onnx.checker.check_model(model)
        except Exception as e:  # the exporter raises many unrelated types
            cause = f" (cause: {first_lines(e.__cause__)})" if e.__cause__ is not None else ""
            raise ExportError(f"{what} cannot be exported to ONNX with the torch.export-based exporter: "
                              f"{first_lines(e)}{cause}. Remove data-dependent Python control flow and "
                              "unsupported ops from its forward") from None
    _strip_debug_info(model)
    return model


def _strip_debug_info(model) -> None:
    """Drop the exporter's per-node stack traces and doc strings (a third of a small student's file)."""
    for node in model.graph.node:
        node.ClearField("metadata_props")
        node.doc_string = ""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        value.ClearField("metadata_props")


def rename_graph_io(model, input_name: str, output_name: str = OUTPUT_NAME) -> None:
    """Give the graph its canonical input/output names (the exporters may keep the forward's argument names)."""
    graph = model.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for old, new in renames.items():
        if old == new:
            continue
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
    graph.input[0].name = input_name
    graph.output[0].name = output_name


def set_metadata(model, metadata: dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)


def save_all(files: list[tuple[Any, Path]]) -> list[int]:
    """Write every (ModelProto, path) as one self-contained file; all are renamed into place or none is."""
    import onnx

    with contextlib.ExitStack() as stack:
        sizes = []
        for model, path in files:
            tmp = stack.enter_context(atomic_path(path))
            onnx.save_model(model, str(tmp), save_as_external_data=False)
            sizes.append(tmp.stat().st_size)
    return sizes
