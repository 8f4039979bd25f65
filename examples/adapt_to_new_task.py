"""Adapt a meta-learned model to a new few-shot task from Python.

    metanas demo --out runs/demo          # or any finished campaign
    python examples/adapt_to_new_task.py runs/demo
"""

import sys

import numpy as np
from sklearn.datasets import load_digits

import metanas

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
learner = metanas.load(run_dir)

# A 3-way 1-shot task on upside-down digits: images (N, H, W) in [0, 1], any labels.
digits = load_digits()
images = np.rot90(digits.images / 16.0, k=2, axes=(1, 2))
rng = np.random.default_rng(0)
support, query, query_labels = [], [], []
for digit in (3, 5, 8):
    idx = rng.permutation(np.flatnonzero(digits.target == digit))
    support.append(images[idx[0]])
    query.extend(images[idx[1:21]])
    query_labels.extend([digit] * 20)

model = learner.adapt(np.stack(support), np.array([3, 5, 8]))
pred = model.predict(np.stack(query))
print("genotype:", model.genotype)
print("accuracy:", float((pred == np.array(query_labels)).mean()))
