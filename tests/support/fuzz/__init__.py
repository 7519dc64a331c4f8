"""
Fuzz targets: drivers that feed hostile bytes to one decoder or protocol
on memory transports and check its bounds.  The hypothesis tests in
``tests/unit`` and ``tools/fuzz.py`` run the same targets
(:mod:`.targets` names them all).
"""
