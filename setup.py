"""The package layout; the rest of the metadata is in pyproject.toml.

The experiments live in experiments/ at the top of the repository, where a reader finds them,
but install as `jaxnets.experiments`: a top-level `experiments` package in site-packages would
collide with any other project's. Their one-step tests (`*_test.py`, beside the code as in
Flax's examples) stay out of the wheel.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPyWithoutTests(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, name, path) for pkg, name, path in modules if not name.endswith("_test")]


setup(
    packages=find_packages(include=["jaxnets", "jaxnets.*"])
    + [f"jaxnets.{name}" for name in find_packages(include=["experiments", "experiments.*"])],
    package_dir={"jaxnets.experiments": "experiments"},
    cmdclass={"build_py": BuildPyWithoutTests},
)
