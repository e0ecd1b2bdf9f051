"""The organisers' evaluation step for a DCASE 2025 inference package module, re-implemented from its published
contract (see README.md). Standalone: torch, pandas; never the asc toolkit.

usage: python evaluation_step.py --submission_name <Label> --submission_index <n> --dev_set_dir D --eval_set_dir E
"""

import argparse
import importlib
import json
from importlib import resources
from pathlib import Path

import pandas as pd
import torch


def main():
    parser = argparse.ArgumentParser()
    for name in ("--submission_name", "--dev_set_dir", "--eval_set_dir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--submission_index", type=int, required=True)
    args = parser.parse_args()
    api = importlib.import_module(f"{args.submission_name}.{args.submission_name}_{args.submission_index}")
    use_cuda = torch.cuda.is_available()

    split = pd.read_csv(resources.files(f"{args.submission_name}.resources") / "test.csv", sep="\t")
    meta = pd.read_csv(Path(args.dev_set_dir) / "meta.csv", sep="\t")
    test = split.drop(columns=["scene_label"], errors="ignore").merge(meta, on="filename")
    logits, classes = api.predict(file_paths=[str(Path(args.dev_set_dir) / f) for f in test["filename"]],
                                  device_ids=list(test["source_label"]), model_file_path=None, use_cuda=use_cuda)
    truth = [classes.index(label) for label in test["scene_label"]]
    correct = sum(int(t == int(x.argmax())) for t, x in zip(truth, logits))
    accuracy = correct / len(truth)
    print(f"Test Accuracy: {100 * accuracy:.2f}%")

    evaluation = pd.read_csv(Path(args.eval_set_dir) / "evaluation_setup" / "fold1_test.csv", sep="\t")
    eval_logits, eval_classes = api.predict(
        file_paths=[str(Path(args.eval_set_dir) / f) for f in evaluation["filename"]],
        device_ids=list(evaluation["device_id"]), model_file_path=None, use_cuda=use_cuda)
    assert eval_classes == classes, "class order differs between the test and the evaluation predictions"
    probs = torch.softmax(torch.stack(eval_logits), dim=1)
    table = pd.DataFrame({"filename": evaluation["filename"],
                          "scene_label": [classes[i] for i in probs.argmax(dim=1).tolist()]})
    for i, label in enumerate(classes):
        table[label] = probs[:, i].tolist()
    out = Path("predictions") / f"{args.submission_name}_{args.submission_index}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "output.csv", sep="\t", index=False)
    torch.save(api.load_model().model.state_dict(), out / "model_state_dict.pt")
    (out / "test_accuracy.json").write_text(json.dumps({"Test Accuracy": round(100 * accuracy, 2)}, indent=2))


if __name__ == "__main__":
    main()
