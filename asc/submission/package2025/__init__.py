"""Modules copied verbatim into every generated DCASE 2025 inference package (``asc package --format
inference-2025``). They import only torch, numpy, soundfile, tqdm and the package's own generated modules, never
``asc``: the package runs where the toolkit is not installed. ``deploy`` is also imported by the generator, which
uses it to write the deployed weights the package loads."""
