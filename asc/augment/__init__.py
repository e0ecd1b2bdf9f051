"""Training-time augmentation, all of it in one config section and one pipeline (docs/recipes.md).

:class:`AugmentConfig` (the ``augment`` section) lists every perturbation of a training input; :func:`resolve_augment`
fills the settings a config leaves to the model's recipe and refuses what cannot run (DIR without impulse
responses). :class:`TrainAugment` runs them on the batch, on the training device: DIR (:class:`DeviceImpulseResponse`,
batched FFT convolution) -> time roll -> front end with band jitter -> frequency / time masks -> Freq-MixStyle
(:class:`FreqMixStyle`) -> mixup (:func:`mixup_params`, :func:`mix`), every draw from one checkpointed generator.
The DataLoader only slices the audio cache.
"""

from asc.augment.batch import (FreqMixStyle, apply_masks, freq_mixstyle, mix, mixup, mixup_params, roll, sample_beta,
                               sample_masks, sample_shifts)
from asc.augment.config import FRONTEND_DEFAULTS, AugmentConfig, check_augment, describe, resolve_augment
from asc.augment.impulse import DeviceImpulseResponse, fast_length, load_impulse_responses
from asc.augment.pipeline import AugmentedBatch, TrainAugment

__all__ = ["FRONTEND_DEFAULTS", "AugmentConfig", "AugmentedBatch", "DeviceImpulseResponse", "FreqMixStyle",
           "TrainAugment", "apply_masks", "check_augment", "describe", "fast_length", "freq_mixstyle",
           "load_impulse_responses", "mix", "mixup", "mixup_params", "resolve_augment", "roll", "sample_beta",
           "sample_masks", "sample_shifts"]
