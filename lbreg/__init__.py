"""lbreg: lifted Bregman inversion of deep neural networks.

Reference implementation of X. Wang and M. Benning, *A lifted Bregman formulation for the
inversion of deep neural networks*, Front. Appl. Math. Stat. 9:1176850 (2023).
"""

__version__ = "0.1.0"
