"""Training, export and evaluation of the score model (`make train`, `make evaluate`)."""
