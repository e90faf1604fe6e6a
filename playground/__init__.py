"""The Streamlit app: `Home.py` routes between the pages, one folder each (`graph/`, `tokenizer/`,
`attention/`, `train/`, `generate/`, `home/`): `logic.py` (no Streamlit, unit-tested), `view.py` (the page
script, the only place `st.*` appears) and, where the page has charts, `figures.py`; `common/` holds what
they share."""
