"""The Streamlit app: `Home.py` routes between the pages in `app_pages/`; the logic they draw lives
in importable, unit-tested modules here (`explore.py`, `gradcheck.py`)."""
