"""The Systems page: where a training step's time goes, op by op, and what each plan toggle changes."""
