"""The Graph page: an expression's forward and backward graphs, values, a gradient check against torch."""
