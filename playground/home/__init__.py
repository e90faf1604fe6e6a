"""The Home page: what the playground is, and one card per page with a one-click example."""
