"""
What the tests share and that is no test itself: the harnesses (in-process
loopback, real processes), fakes, backends and users, the frp capture
readers, test certificates and the fuzz targets that ``tools/fuzz.py``
also runs.
"""
