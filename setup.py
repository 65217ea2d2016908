"""Build the one C extension (smbench._native); everything else lives in pyproject.toml."""
import numpy
from setuptools import Extension, setup

setup(ext_modules=[Extension("smbench._native", ["smbench/_native.c"],
                             include_dirs=[numpy.get_include()], extra_compile_args=["-O2"])])
