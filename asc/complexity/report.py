"""What a count says about one model: :class:`ComplexityReport` (official figures, cross-check, memory per
precision, notes) and its per-layer rows, plus the precisions parameter memory is priced at."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from asc.errors import AscError, ConfigError

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
PRECISIONS = (*BYTES_PER_PARAM, "stored")


class ComplexityError(AscError):
    """A model, ONNX file or budget cannot be counted or read."""


@dataclass
class LayerRow:
    """One row of the per-layer table (one call of a leaf module, or one ONNX node)."""

    name: str
    type: str
    output_shape: list[int]
    params: int
    macs: int
    check_macs: int | None = None  # independent count of the same module (None: not comparable)


@dataclass
class ComplexityReport:
    """Parameters, MACs and parameter memory of one model on one input size."""

    name: str
    input_size: tuple[int, ...]
    params: int  # official: torchinfo total_params on the float32 equivalent (ONNX: initializer elements)
    macs: int  # official: torchinfo total_mult_adds (ONNX: from inferred shapes)
    stored_bytes: int  # parameter memory at the dtypes the model really stores
    stored_dtypes: dict[str, int]  # dtype name -> number of parameters stored in it
    method: str  # "torchinfo", "analytic" (torchinfo could not run) or "onnx"
    layers: list[LayerRow] = field(default_factory=list)
    check_params: int | None = None  # independent forward-hook count
    check_macs: int | None = None
    folded_params: int | None = None  # with every BatchNorm folded into the conv before it (None: nothing to fold)
    folded_macs: int | None = None
    bn_folded: bool = False  # BatchNorm already folded in the model as given (INT8-converted, ONNX)
    zero_params: int = 0  # zero-valued parameters (counted, as the rules require)
    deployed_precision: str | None = None  # precision implied by the model itself (None: plain float32)
    raw_torchinfo: dict[str, Any] | None = None  # torchinfo on the model as given, where a trap was handled
    torch_params: int | None = None  # ONNX: official count of the unfused PyTorch model named in the metadata
    torch_macs: int | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    precision: str | None = None  # precision asked for by the caller (None: decided at check time)

    def param_bytes(self, precision: str | None = None) -> int:
        """Parameter memory in bytes at ``precision`` (fp32/fp16/bf16/int8) or at the stored dtypes."""
        precision = precision or self.precision or "stored"
        if precision == "stored":
            return self.stored_bytes
        if precision not in BYTES_PER_PARAM:
            raise ConfigError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        return self.params * BYTES_PER_PARAM[precision]

    @property
    def bytes(self) -> int:
        return self.param_bytes()

    @property
    def budget_params(self) -> int:
        """The parameter count the rules judge: the unfused PyTorch model's where an ONNX graph names it."""
        return self.torch_params if self.torch_params is not None else self.params

    @property
    def budget_macs(self) -> int:
        """The MACs the rules judge: the unfused PyTorch model's where an ONNX graph names it (folding BatchNorm
        into conv biases adds bias MACs the official count of the unfused model does not have)."""
        return self.torch_macs if self.torch_macs is not None else self.macs

    @property
    def cross_check_agrees(self) -> bool | None:
        if self.check_params is None or self.check_macs is None:
            return None
        return self.check_params == self.params and self.check_macs == self.macs

    def to_dict(self, layers: bool = False) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        data["param_bytes"] = {p: self.param_bytes(p) for p in PRECISIONS}
        data["cross_check_agrees"] = self.cross_check_agrees
        if not layers:
            data.pop("layers")
        return data

    def layer_table(self) -> str:
        """The per-layer table for people."""
        head = ("layer", "type", "output shape", "params", "MACs", "check")
        rows = [(r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                 "" if r.check_macs is None or r.check_macs == r.macs else f"{r.check_macs:,} (differs)")
                for r in self.layers]
        rows.append(("total", "", "", f"{self.params:,}", f"{self.macs:,}", ""))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        right = {3, 4}
        lines = []
        for i, row in enumerate([head, *rows]):
            cells = [str(c).rjust(w) if j in right else str(c).ljust(w) for j, (c, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
            if i == 0 or i == len(rows) - 1:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def summary_lines(self) -> list[str]:
        """Figures for people: official count, cross-check, folding, memory per precision, notes and warnings."""
        lines = [f"input         {list(self.input_size)}"]
        source = {"torchinfo": "torchinfo 1.8.0", "analytic": "analytic count: torchinfo cannot run this model",
                  "onnx": "ONNX graph"}[self.method]
        lines.append(f"parameters    {self.params:,}  ({source}){_check_text(self.params, self.check_params)}")
        lines.append(f"MACs          {self.macs:,}  ({source}){_check_text(self.macs, self.check_macs)}")
        if self.folded_params is not None:
            lines.append(f"BN folded     {self.folded_params:,} parameters, {self.folded_macs:,} MACs "
                         "(BatchNorm folded into the preceding conv, as ONNX export / INT8 conversion do)")
        memory = " · ".join(f"{p} {self.param_bytes(p):,} B" for p in ("fp32", "fp16", "int8"))
        stored = ", ".join(f"{n:,} {d}" for d, n in self.stored_dtypes.items()) or "none"
        lines.append(f"memory        {memory} · stored {self.stored_bytes:,} B ({stored})")
        if self.zero_params * 10 >= self.params > 0:  # pruned or sparse: worth saying they still count
            lines.append(f"zeros         {self.zero_params:,} zero-valued parameters "
                         f"({100 * self.zero_params / self.params:.0f} %), counted as the rules require")
        lines += [f"note          {n}" for n in self.notes]
        lines += [f"WARNING       {w}" for w in self.warnings]
        return lines


def _check_text(official: int, check: int | None) -> str:
    if check is None:
        return ""
    if check == official:
        return f"; cross-check {check:,} agrees"
    return f"; cross-check {check:,} DISAGREES by {check - official:+,}"
