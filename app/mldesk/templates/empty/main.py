"""Your experiment. mldesk runs it as `python main.py` followed by the parameters from
ml.yaml; the inputs are in inputs/, and whatever you write to outputs/ is kept."""

import sys

print("arguments:", sys.argv[1:])
