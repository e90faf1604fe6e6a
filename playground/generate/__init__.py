"""The Generate page: one view for every model, the probabilities and attention behind each token."""
