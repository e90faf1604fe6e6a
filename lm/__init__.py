"""lm: decoder-only transformer language models whose forward and backward passes are autodiff graphs.

The parts, each importable on its own: `lm.nn` (components as graph functions), `lm.config` (sizes and
presets), `lm.model` (`LanguageModel`), `lm.tokenizers`, `lm.data` (sentences and windows),
`lm.optim` (SGD, AdamW, schedule, clipping), `lm.train` (`Trainer`, one for every recipe),
`lm.generate` (`generate`, one trace), `lm.checkpoint` (one file format), and `python -m lm`.
"""
