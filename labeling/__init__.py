"""Pure domain core of Corrigo: splitting, sampling, training, evaluation, gating, artifacts.

Depends only on numpy, scipy, scikit-learn, skops and (in ``sampling`` alone) modAL, so it can
be used and tested without a web server, database or queue.
"""
