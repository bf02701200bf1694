"""mimmx: confounder-free learning by mutual-information minimisation (MIMM, MIMM-X).

Layout, imports flowing downward:
data -> morpho -> scenarios -> models -> methods -> trainer -> evaluation.
"""

__version__ = "0.1.0"
