"""Test-suite settings: hypothesis draws the same examples on every run (a CI failure can be
reproduced locally) and never times out on the first, JIT-compiling call."""
from hypothesis import settings

settings.register_profile("handprop", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("handprop")
