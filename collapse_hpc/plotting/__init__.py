"""Figures drawn one way for the whole package, below the experiments that draw them.

style.py    the one figure style (greyscale-readable: markers and dashes, not colour alone)
plots.py    shared drawing helpers (series, bands, gaps for missing generations, saving)
figures.py  the metric grid and what the experiments' figure functions share
"""
