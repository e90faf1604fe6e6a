"""The Tokenizer page: text as token chips, BPE training and its merge explorer."""
