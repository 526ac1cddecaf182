"""
Side-by-side benchmarks: the same workload against ZeroC's C{icegridregistry}
and against gridreg's C{python -m twisted gridregistry}, in one run.

See C{bench/README.rst}.
"""
