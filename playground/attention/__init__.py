"""The Attention page: self-attention built in six steps on a sentence the learner types."""
