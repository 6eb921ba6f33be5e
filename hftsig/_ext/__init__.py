"""Private compiled kernels (Cython and C); use the public modules instead."""
