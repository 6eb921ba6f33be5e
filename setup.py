"""Build of hftsig's Cython extensions.

Every ``hftsig/**/*.pyx`` is compiled with numpy headers and ``-O3``; OpenMP
is added when the compiler accepts ``-fopenmp`` (otherwise the kernels run
single-threaded).  Cython directives are set here once for all modules:
bounds checks and wraparound are off and C division is on, unless
``HFTSIG_CYTHON_DEBUG=1`` is set in the environment, which turns the checks
back on for debugging.

``HFTSIG_SANITIZE`` (unset by default) builds for the sanitizers and the
fuzzers, e.g. ``HFTSIG_SANITIZE=address,undefined`` or, with clang for
coverage-guided fuzzing, ``address,undefined,fuzzer-no-link``: it adds
``-fsanitize=...`` with frame pointers and debug info and drops ``-O3`` and
``-march=native``.  Such a build needs the sanitizer runtime preloaded into
Python (``make asan`` and ``docs/fuzzing.md`` show how), so it goes to a
separate tree, never in place of the normal build.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("HFTSIG_CYTHON_DEBUG", "0") not in ("", "0", "false", "False")

_SANITIZERS = ("address", "undefined", "fuzzer-no-link")


def _sanitizers():
    """The ``HFTSIG_SANITIZE`` list (empty when unset), checked name by name."""
    names = [n.strip() for n in os.environ.get("HFTSIG_SANITIZE", "").split(",") if n.strip()]
    for name in names:
        if name not in _SANITIZERS:
            raise SystemExit(f"HFTSIG_SANITIZE: unknown sanitizer {name!r}; "
                             f"choose from {', '.join(_SANITIZERS)}")
    return names


SANITIZE = _sanitizers()


def _has_openmp():
    """Return True when the C compiler builds and links a tiny OpenMP program."""
    if os.environ.get("HFTSIG_NO_OPENMP"):
        return False
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    if shutil.which(cc) is None:
        return False
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        c_file = os.path.join(tmp, "t.c")
        with open(c_file, "w") as fh:
            fh.write(src)
        try:
            res = subprocess.run(
                [cc, "-fopenmp", c_file, "-o", os.path.join(tmp, "t")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        except OSError:
            return False
        return res.returncode == 0


OPENMP = _has_openmp()

compile_args = ["-O0", "-g"] if DEBUG else ["-O1", "-g"] if SANITIZE else ["-O3"]
if sys.platform != "win32":
    compile_args += ["-Wno-unused-function", "-Wno-unreachable-code"]
    if not DEBUG and not SANITIZE and os.environ.get("HFTSIG_NATIVE", "1") not in ("", "0"):
        # hftsig is installed from source on the machine that runs it, so the
        # kernels may use its full SIMD width; HFTSIG_NATIVE=0 builds portable
        # binaries (e.g. a Docker image built on one CPU and run on another).
        compile_args.append("-march=native")
link_args = []
if SANITIZE:
    flag = "-fsanitize=" + ",".join(SANITIZE)
    # a finding must stop the run (UBSan would print and go on), and the
    # reports need frame pointers to show where the bad access came from
    compile_args += [flag, "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    link_args.append(flag)
if OPENMP:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

extensions = []
for pyx in sorted(glob("hftsig/**/*.pyx", recursive=True)):
    module = pyx[:-4].replace("/", ".").replace("\\", ".")
    extensions.append(
        Extension(
            module,
            [pyx],
            include_dirs=[np.get_include(), os.path.dirname(pyx)],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            # the C kernels live in headers: editing one must rebuild its modules
            depends=sorted(glob(os.path.join(os.path.dirname(pyx), "*.h"))),
        )
    )

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        compile_time_env={"HFTSIG_OPENMP": OPENMP},
        nthreads=int(os.environ.get("HFTSIG_BUILD_JOBS", "0")) or None,
        quiet=True,
    ),
)
