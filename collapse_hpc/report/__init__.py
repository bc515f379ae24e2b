"""The report of one or more runs (collapse-hpc aggregate RUN [RUN …]).

collect.py  run folder -> checked units -> long metrics table
stats.py    mean and 95% t interval over seeds and replicates per generation
drawing.py  every figure of an experiment: its own (plotting/ draws them), plus every metric
            against generation
tables.py   generation 0 against the last, progress, compute, package versions
page.py     index.html and results.md
aggregate.py  the command: writes everything under RUN/report/ (and the final job of a Slurm run)
"""
