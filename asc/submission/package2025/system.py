"""One system of this DCASE 2025 Task 1 inference package: the four functions of the organisers' template, with
this module's own checkpoint ``ckpts/<module name>.pt`` (README.md lists what each system is)."""

from . import _common

CHECKPOINT = __name__.rsplit(".", 1)[-1] + ".pt"


def load_model(model_file_path=None):
    """The system: an nn.Module with ``.model`` (multi-device container), ``.class_order`` and ``.config``."""
    return _common.load_model(model_file_path or _common.packaged_checkpoint(CHECKPOINT))


def load_inputs(file_paths, device_ids, model):
    """One model-ready log-mel input [1, 1, F, T] per file, in file order."""
    return _common.load_inputs(file_paths, device_ids, model)


def get_model_for_device(model, device_id):
    """The deployed network that handles ``device_id`` (unknown devices: the general network)."""
    return _common.get_model_for_device(model, device_id)


def predict(file_paths, device_ids, model_file_path=None, use_cuda=True, batch_size=64):
    """(list of logit tensors [n_classes], one per file in file order; the class order)."""
    return _common.predict(file_paths, device_ids, load_model(model_file_path), use_cuda=use_cuda,
                           batch_size=batch_size)
