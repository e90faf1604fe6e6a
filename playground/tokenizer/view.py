"""The Tokenizer page: text as coloured token chips (GPT-2's BPE, the default model's words, or a BPE
trained here), BPE training with a progress bar, a merge explorer and a download of the trained files.

The logic is logic.py, the chart figures.py; trained tokenizers live in this browser session's state.
"""

from __future__ import annotations

import streamlit as st

from playground.common.markdown import literal
from playground.tokenizer import logic as tk
from playground.tokenizer.figures import curve_figure

TRAINED = "tok_trained"  # this session's trained tokenizers, newest last

st.title("Tokenizer")
st.markdown(
    "A language model reads integers, not text. A **byte-level BPE** (as in GPT-2) starts from the 256 "
    "bytes and learns merges: the most frequent adjacent pair becomes a new token, again and again. Type "
    "text to see its tokens, or train a BPE below and step through what it learned."
)
trained: list[tk.Trained] = st.session_state.setdefault(TRAINED, [])

# ------------------------------------------------------------------------------- tokenize
names = [tk.GPT2, tk.WORD] + [t.name for t in reversed(trained)]
if "tok_pending_choice" in st.session_state:  # a tokenizer was just trained: show it (before the widget exists)
    st.session_state["tok_choice"] = st.session_state.pop("tok_pending_choice")
choice = st.selectbox("Tokenizer", names, key="tok_choice")
text = st.text_area("Text", tk.default_text(), height=140, key="tok_text", max_chars=tk.MAX_TEXT_CHARS)
tokenizer = {tk.GPT2: tk.gpt2, tk.WORD: tk.word_tokenizer}.get(choice)
tokenizer = tokenizer() if tokenizer else next(t.tokenizer for t in trained if t.name == choice)
try:
    shown = tk.tokenize(tokenizer, text)
except tk.TokenizingError as err:
    st.error(literal(str(err)), icon=":material/block:")
    shown = None
if shown is not None:
    chars, n_bytes, tokens, per = st.columns(4)
    chars.metric("Characters", f"{shown.chars:,}")
    n_bytes.metric("Bytes (UTF-8)", f"{shown.n_bytes:,}")
    tokens.metric("Tokens", f"{shown.tokens:,}")
    per.metric("Bytes per token", f"{shown.bytes_per_token:.2f}")
    st.html(tk.chips_html(shown.chips))
    st.caption(
        "Hover a token for its id and bytes. ␣ is a space, \\n a newline; \\xNN a byte that is part of a character."
    )

# ------------------------------------------------------------------------------- train
st.header("Train a BPE")
source = st.radio("Corpus", ["story sample", "pasted text", "uploaded file"], horizontal=True, key="tok_source")
pasted, upload = "", None
if source == "pasted text":
    pasted = st.text_area(f"Corpus text (at most {tk.MAX_CORPUS_BYTES:,} bytes)", height=120, key="tok_pasted")
elif source == "uploaded file":
    upload = st.file_uploader(
        f"A UTF-8 .txt file (at most {tk.MAX_CORPUS_BYTES:,} bytes)", type=["txt"], key="tok_upload"
    )
else:
    st.caption("Five TinyStories stories (3.8 KB) separated by <|endoftext|>.")
vocab_size = st.slider("Vocabulary size", tk.MIN_VOCAB, tk.MAX_VOCAB, 400, key="tok_vocab")
special = st.checkbox("<|endoftext|> is a special token", value=True, key="tok_special")  # whole, any width
# the Home page's example arrives with the defaults above (story sample, 400, <|endoftext|>) and trains at once
if st.button("Train", icon=":material/model_training:", key="tok_train") or st.session_state.pop("tok_autotrain", 0):
    bar = st.progress(0.0, text="reading the corpus")
    try:
        corpus = tk.corpus_text(source, pasted, upload.getvalue() if upload else None, upload.name if upload else "")
        new = tk.train(corpus, vocab_size, special, len(trained) + 1, progress=lambda f, label: bar.progress(f, label))
    except tk.TokenizingError as err:
        bar.empty()
        st.error(literal(str(err)), icon=":material/block:")
    else:
        trained.append(new)
        st.session_state["tok_pending_choice"] = new.name
        st.session_state["tok_message"] = f"{literal(new.name)}: {tk.summary(new)}. The text above now uses it."
        st.rerun()  # so the Tokenizer list above holds the new one
if "tok_message" in st.session_state:
    st.success(st.session_state.pop("tok_message"), icon=":material/check:")

# ------------------------------------------------------------------------------- explore
if trained:
    latest = trained[-1]
    st.header("Merge explorer")
    st.markdown(f"**{literal(latest.name)}** — {tk.summary(latest)}")
    n = len(latest.result.merges)
    if n == 0:
        st.info("This tokenizer learned no merges: its corpus has no repeated pair.")
    else:
        k = st.slider("Merges used (k)", 1, n, min(10, n), key="tok_k")
        step = tk.merge_step(latest, k)
        st.markdown(
            f"Merge **{step.k}**: `{step.left}` + `{step.right}` → `{step.merged}` (id {step.token_id}), "
            f"a pair seen **{step.count:,}** times when it was chosen."
        )
        sample = text if text.strip() else tk.default_text()
        try:
            with_k = tk.tokenize(latest.tokenizer.with_merges(k), sample)
        except tk.TokenizingError as err:
            st.error(literal(str(err)), icon=":material/block:")
        else:
            st.caption(f"The text above with the first {k} merges: {with_k.tokens:,} tokens, "
                       f"{with_k.bytes_per_token:.2f} bytes per token.")  # fmt: skip
            st.html(tk.chips_html(with_k.chips))
            ks, values = tk.bytes_per_token_curve(latest)
            st.plotly_chart(curve_figure(ks, values, k), key="tok_curve")
    st.download_button(
        "Download vocab.json + merges.txt (zip)",
        tk.tokenizer_zip(latest),
        file_name="bpe-tokenizer.zip",
        mime="application/zip",
        icon=":material/download:",
        key="tok_download",
    )
