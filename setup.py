"""Installs the layers under one name: the folders golden/, hw/, ... become bitaccel.golden, bitaccel.hw, ...

The layout keeps each layer a top-level folder (docs/ and BRIEF name them so); the installed
package exposes only `bitaccel`, so a user's environment gains one name and no `model` or `sim`.
Everything else about the package is in pyproject.toml.
"""
from setuptools import find_packages, setup

LAYERS = ["compiler", "golden", "hw", "model", "sim"]

packages = find_packages(include=["bitaccel", "bitaccel.*"])
package_dir = {}
for layer in LAYERS:
    package_dir[f"bitaccel.{layer}"] = layer
    packages += [f"bitaccel.{name}" for name in find_packages(include=[layer, f"{layer}.*"])]

setup(packages=packages, package_dir=package_dir)
