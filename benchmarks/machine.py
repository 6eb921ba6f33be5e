"""The machine line every benchmark prints with its table."""
import os
import platform


def cpu_model():
    """CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def load_average():
    """1-minute load average, or None where the OS has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def describe():
    """CPU model, logical cores, Python and numpy versions, load average now."""
    import numpy as np

    load = load_average()
    load = "?" if load is None else f"{load:.2f}"
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}, load average {load}")
