"""golden: the bit-exact integer reference of a BiT encoder (NumPy only).

Every integer the accelerator produces is defined here first. See docs/numerics.md.
"""
