"""The report of one or more runs (collapse-hpc aggregate RUN [RUN …]).

collect.py  run folder -> checked units -> long metrics table
stats.py    mean and 95% t interval over seeds and replicates per generation
style.py    the one figure style (greyscale-readable: markers and dashes, not colour alone)
plots.py    shared drawing helpers (series, bands, gaps for missing generations, saving)
figures.py  the paper's figures per experiment, plus every metric against generation
tables.py   generation 0 against the last, progress, compute, package versions
page.py     index.html and results.md
aggregate.py  the command: writes everything under RUN/report/
"""
