import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, log_loss

from asc.errors import DatasetError
from asc.metrics import compute_metrics, format_report, softmax
from asc.plots import plot_confusion

LABELS = ["airport", "bus", "metro", "metro_station", "park"]
DEVICES = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6", "s10"]


def random_data(n=600, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(LABELS), n)
    logits = rng.normal(0, 1, (n, len(LABELS))) * spread
    logits[np.arange(n), labels] += rng.normal(1.0, 1.0, n)  # better than chance, not perfect
    devices = rng.choice(DEVICES, n).tolist()
    return logits, labels, devices


def test_overall_metrics_match_sklearn():
    logits, labels, devices = random_data()
    m = compute_metrics(logits, labels, devices, LABELS)
    probs = softmax(logits)
    pred = probs.argmax(1)
    assert m["n"] == len(labels)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, pred), abs=1e-12)
    assert m["macro_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred), abs=1e-12)
    assert m["macro_accuracy"] != pytest.approx(m["accuracy"], abs=1e-6)
    assert m["log_loss"] == pytest.approx(log_loss(labels, probs, labels=range(len(LABELS))), rel=1e-9)
    assert m["confusion"] == confusion_matrix(labels, pred, labels=range(len(LABELS))).tolist()
    assert m["labels"] == LABELS
    for k, name in enumerate(LABELS):
        mask = labels == k
        assert m["per_class"][name]["n"] == mask.sum()
        assert m["per_class"][name]["accuracy"] == pytest.approx(accuracy_score(labels[mask], pred[mask]))
        assert m["per_class"][name]["log_loss"] == pytest.approx(
            log_loss(labels[mask], probs[mask], labels=range(len(LABELS))), rel=1e-9)
    assert m["macro_log_loss"] == pytest.approx(np.mean([m["per_class"][c]["log_loss"] for c in LABELS]))
    json.dumps(m)  # plain Python values only


def test_log_loss_clips_extreme_probabilities_like_sklearn():
    logits = np.array([[800.0, 0.0, 0.0], [0.0, 900.0, 0.0], [0.0, 0.0, 5.0]])
    labels = np.array([1, 1, 2])
    m = compute_metrics(logits, labels, ["a", "a", "b"], ["x", "y", "z"])
    assert np.isfinite(m["log_loss"])
    assert m["log_loss"] == pytest.approx(log_loss(labels, softmax(logits), labels=[0, 1, 2]), rel=1e-9)


def test_per_device_and_group_in_natural_order():
    logits, labels, devices = random_data(seed=1)
    m = compute_metrics(logits, labels, devices, LABELS)
    assert m["devices"] == ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6", "s10"]
    assert list(m["per_device"]) == m["devices"]
    pred = softmax(logits).argmax(1)
    dev = np.array(devices)
    for d in DEVICES:
        mask = dev == d
        assert m["per_device"][d]["n"] == mask.sum()
        assert m["per_device"][d]["accuracy"] == pytest.approx(accuracy_score(labels[mask], pred[mask]))
    assert list(m["per_group"]) == ["real", "seen", "unseen"]
    for group, members in {"real": "a b c", "seen": "s1 s2 s3", "unseen": "s4 s5 s6"}.items():
        mask = np.isin(dev, members.split())
        assert m["per_group"][group]["n"] == mask.sum()
        assert m["per_group"][group]["accuracy"] == pytest.approx(accuracy_score(labels[mask], pred[mask]))
        assert m["per_group"][group]["log_loss"] == pytest.approx(
            log_loss(labels[mask], softmax(logits[mask]), labels=range(len(LABELS))), rel=1e-9)


def test_unlabelled_clips_and_absent_classes():
    logits, labels, devices = random_data(n=200, seed=2)
    labels = labels.copy()
    labels[labels == 4] = 3  # class "park" absent
    labels[:20] = -1
    devices = ["a"] * 100 + [""] * 100
    m = compute_metrics(logits, labels, devices, LABELS)
    keep = labels >= 0
    pred = softmax(logits[keep]).argmax(1)
    assert m["n"] == keep.sum()
    assert m["per_class"]["park"] == {"n": 0, "accuracy": None, "log_loss": None}
    present = [m["per_class"][c]["accuracy"] for c in LABELS[:4]]
    assert m["macro_accuracy"] == pytest.approx(np.mean(present))
    assert m["accuracy"] == pytest.approx(accuracy_score(labels[keep], pred))
    assert m["devices"] == ["a", "unknown"] and m["per_device"]["a"]["n"] == 80
    assert list(m["per_group"]) == ["real"]
    with pytest.raises(DatasetError, match="no labelled clips"):
        compute_metrics(logits[:3], [-1, -1, -1], ["a"] * 3, LABELS)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(logits[:, :3], labels, devices, LABELS)


def test_report_and_confusion_plot(tmp_path):
    logits, labels, devices = random_data(n=300, seed=3)
    m = compute_metrics(logits, labels, devices, LABELS)
    report = format_report(m)
    assert f"{100 * m['macro_accuracy']:.2f}" in report
    for name in [*LABELS, *DEVICES, "real", "seen", "unseen"]:
        assert any(line.split()[0] == name for line in report.splitlines() if line.strip())
    s4 = next(line for line in report.splitlines() if line.startswith("s4 "))
    assert f"{100 * m['per_device']['s4']['accuracy']:.2f}" in s4
    path = plot_confusion(m, tmp_path / "plots" / "test_confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["test_confusion.png"]
