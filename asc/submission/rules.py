"""The official DCASE Task 1 submission rules as data (2024 edition: zip of per-split outputs + meta YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from asc.data.layout import TAU_DEVICES, TAU_SCENES

SPLITS = ("5", "10", "25", "50", "100")

SUBMISSION_FIELDS = ("label", "name", "abbreviation", "authors")
AUTHOR_FIELDS = ("lastname", "firstname", "email", "affiliation")
DESCRIPTION_FIELDS = ("input_sampling_rate", "acoustic_features", "data_augmentation", "machine_learning_method",
                      "external_data_usage", "complexity_management", "pipeline", "framework", "split_adaptations",
                      "system_adaptations")
COMPLEXITY_FIELDS = ("total_model_size", "total_parameters", "macs")
SYSTEM_FIELDS = ("description", "complexity", "external_datasets", "source_code")
EXTERNAL_DATASET_FIELDS = ("name", "url", "total_audio_length")
RESULT_FIELDS = ("accuracy", "logloss")
MAX_ABBREVIATION = 10
MAX_SYSTEMS = 4


@dataclass
class SubmissionRules:
    """What a submission is validated against: the class list (in index order), the evaluation file list and the
    devices reported in the meta YAML. Defaults are the TAU scenes and devices; the evaluation list has no default."""

    eval_files: list[str]
    labels: list[str] = field(default_factory=lambda: list(TAU_SCENES))
    devices: list[str] = field(default_factory=lambda: list(TAU_DEVICES))
    splits: tuple[str, ...] = SPLITS
    prob_sum_tolerance: float = 1e-3

    @property
    def header(self) -> list[str]:
        return ["filename", "scene_label", *self.labels]


def output_name(label: str, split: str) -> str:
    return f"{label}.output.split_{split}.csv"


def meta_name(label: str) -> str:
    return f"{label}.meta.yaml"


def eval_basename(filename: str) -> str:
    """File name as written in an output CSV: the evaluation list's name without the ``audio/`` folder."""
    return filename.split("/")[-1]


OFFICIAL_2024_EVAL_COUNT = 135_730


def official_2024_eval_files() -> list[str]:
    """The DCASE 2024 evaluation list: audio/0.wav … audio/135729.wav."""
    return [f"audio/{i}.wav" for i in range(OFFICIAL_2024_EVAL_COUNT)]
