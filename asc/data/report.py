"""What a dataset contains: clips per split × class × device, locations, segments, audio formats and durations."""

from __future__ import annotations

import collections
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from asc.data.layout import Layout, read_dataset
from asc.errors import DatasetError
from asc.fileio import save_figure, write_json
from asc.plots import class_device_figure


def dataset_report(root: str | Path | Layout, audio: bool = True, progress: bool = True) -> dict:
    """Counts per split (every available one) by class and device, plus audio headers of every clip in meta.csv."""
    layout = root if isinstance(root, Layout) else read_dataset(root)
    report = {"root": str(layout.root), "clips": len(layout.meta), "labels": layout.labels,
              "devices": layout.devices, "cities": layout.cities, "splits": {}}
    for name in layout.available_splits():
        table = layout.split(name)
        counts = collections.Counter(zip(table["scene_label"], table["device"]))
        report["splits"][name] = {
            "file": str(layout.split_path(name)),
            "rows": len(table),
            "segments": int(table["segment"].nunique()),
            "locations": int(table["location"].nunique()),
            "per_class": {label: int((table["scene_label"] == label).sum()) for label in layout.labels},
            "per_device": {dev: int((table["device"] == dev).sum()) for dev in layout.devices},
            "class_device": {label: {dev: counts.get((label, dev), 0) for dev in layout.devices}
                             for label in layout.labels},
        }
    if audio:
        report["audio"] = audio_summary(layout.root, layout.meta["filename"].tolist(), progress)
    return report


def audio_summary(root: Path, filenames: list[str], progress: bool = True) -> dict:
    """Sample rates, channel counts, formats and durations from the headers (files that cannot be read are listed)."""
    rates, channels, formats, durations = (collections.Counter() for _ in range(4))
    unreadable = []
    for name in tqdm(filenames, desc="reading audio headers", unit="file", disable=not progress or None):
        try:
            info = sf.info(str(Path(root) / name))
        except Exception as e:  # soundfile raises several types for bad files
            unreadable.append(f"{name}: {str(e).strip() or type(e).__name__}")
            continue
        rates[info.samplerate] += 1
        channels[info.channels] += 1
        formats[f"{info.format}/{info.subtype}"] += 1
        durations[round(info.frames / info.samplerate, 4) if info.samplerate else 0.0] += 1
    return {"files": len(filenames), "sample_rates": _keyed(rates), "channels": _keyed(channels),
            "formats": dict(formats), "durations_s": _keyed(durations), "unreadable": unreadable,
            "total_hours": round(sum(d * n for d, n in durations.items()) / 3600, 4)}


def _keyed(counter: collections.Counter) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counter.items())}


def format_report(report: dict) -> str:
    """Human tables: clips per split × device, then per split × class."""
    devices, labels = report["devices"], report["labels"]
    splits = report["splits"]
    width = max(8, *(len(d) + 1 for d in devices))
    lines = [f"{report['root']}: {report['clips']} clips, {len(labels)} classes, {len(devices)} devices, "
             f"{len(report['cities'])} cities", ""]
    header = f"{'split':<8}{'rows':>7}{'segs':>6}{'locs':>6} " + "".join(f"{d:>{width}}" for d in devices)
    lines += ["clips per split and device", header]
    for name, s in splits.items():
        lines.append(f"{name:<8}{s['rows']:>7}{s['segments']:>6}{s['locations']:>6} "
                     + "".join(f"{s['per_device'][d]:>{width}}" for d in devices))
    label_width = max(len(x) for x in labels) + 2
    lines += ["", "clips per class and split", f"{'class':<{label_width}}" + "".join(f"{n:>8}" for n in splits)]
    for label in labels:
        lines.append(f"{label:<{label_width}}" + "".join(f"{s['per_class'][label]:>8}" for s in splits.values()))
    if "audio" in report:
        a = report["audio"]
        lines += ["", f"audio: {a['files']} files, {a['total_hours']} h; sample rates "
                  + ", ".join(f"{k} Hz ×{v}" for k, v in a["sample_rates"].items())
                  + "; durations " + ", ".join(f"{k} s ×{v}" for k, v in a["durations_s"].items())
                  + "; channels " + ", ".join(f"{k} ×{v}" for k, v in a["channels"].items())]
        if a["unreadable"]:
            lines.append(f"unreadable ({len(a['unreadable'])}): " + "; ".join(a["unreadable"][:10]))
    return "\n".join(lines)


def write_report(report: dict, out: str | Path) -> list[Path]:
    """``out/data_report.json`` and ``out/data_report.png`` (clips per class in each split, stacked by device)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder; give a folder for the report")
    json_path = write_json(out / "data_report.json", report)
    fig = class_device_figure(report["splits"], report["labels"], report["devices"])
    return [json_path, save_figure(fig, out / "data_report.png", dpi=110)]
