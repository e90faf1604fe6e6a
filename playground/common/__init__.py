"""What every page shares: widget state kept across pages (`state.py`, its Streamlit side `view.py`),
the Plotly helpers every chart uses (`charts.py`) and user text shown literally (`markdown.py`)."""
