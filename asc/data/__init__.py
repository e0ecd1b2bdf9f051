"""Datasets in the TAU Urban Acoustic Scenes 2022 Mobile layout."""
