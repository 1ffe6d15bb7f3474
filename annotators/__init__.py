"""Ray-free model code of the annotator branches and the segmenter.

numba (under librosa) compiles for the host CPU by default and caches the machine code next to librosa; on
some CPUs (seen on an AMX Xeon with numba 0.68) that code segfaults in `librosa.beat.beat_track`, and a cache
written on one CPU is reused on another. Compiling for a generic x86-64 target gives the same code on every
machine of a cluster; set NUMBA_CPU_NAME yourself to override.
"""

import os

os.environ.setdefault("NUMBA_CPU_NAME", "generic")
